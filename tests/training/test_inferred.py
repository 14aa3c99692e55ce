"""Pairs implied by transitivity (training/verifier/inferred.py)."""

from __future__ import annotations

from training.verifier.common import LabelledPair
from training.verifier.inferred import inferred_pairs


def _key(p: LabelledPair) -> tuple[frozenset[str], bool]:
    return frozenset((p.a.casefold(), p.b.casefold())), p.label


def test_same_answer_chains_and_the_pairs_they_separate() -> None:
    pairs = [
        LabelledPair("1", "A?", "B?", True),
        LabelledPair("2", "b?", "C?", True),  # the same question as "B?" up to case
        LabelledPair("3", "C?", "X?", False),
        LabelledPair("4", "X?", "Y?", True),
    ]
    got = {_key(p) for p in inferred_pairs(pairs, 100, seed=1)}
    assert got == {
        (frozenset(("a?", "c?")), True),
        # Every question of {A, B, C} against every one of {X, Y}, less the labelled C/X.
        *((frozenset((a, x)), False) for a in ("a?", "b?", "c?") for x in ("x?", "y?")),
    } - {(frozenset(("c?", "x?")), False)}


def test_a_group_that_contradicts_itself_implies_nothing() -> None:
    pairs = [
        LabelledPair("1", "A?", "B?", True),
        LabelledPair("2", "B?", "C?", True),
        LabelledPair("3", "A?", "C?", False),  # says A and C differ: the group is unsure
        LabelledPair("4", "C?", "X?", False),
        LabelledPair("5", "X?", "Y?", True),
    ]
    assert inferred_pairs(pairs, 100, seed=1) == []


def test_big_groups_are_capped_and_the_sample_is_seeded() -> None:
    hub = [LabelledPair(str(i), "Hub?", f"Q{i}?", True) for i in range(20)]
    got = inferred_pairs(hub, 1000, seed=3)
    # 21 questions imply 210 - 20 unlabelled pairs; at most 3 per question are kept.
    assert len(got) == 3 * 21
    assert all(p.label for p in got)
    assert not {_key(p) for p in got} & {_key(p) for p in hub}
    assert inferred_pairs(hub, 1000, seed=3) == got
    assert inferred_pairs(hub, 10, seed=3) == got[:10]
