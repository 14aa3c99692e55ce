"""The verifier's data split keeps every question on one side (training/verifier/split.py)."""

from __future__ import annotations

import random

from training.verifier.common import SPLITS, LabelledPair
from training.verifier.split import component_split, normalise


def _pairs() -> list[LabelledPair]:
    """Chains and stars of questions that share texts (up to case and spacing), plus
    singletons, so that a pair-by-pair split would put shared questions on both sides."""
    rng = random.Random(7)
    pairs: list[LabelledPair] = []
    for group in range(120):
        size = rng.choice([1, 1, 1, 2, 3, 5, 8])
        texts = [f"How do I fix problem {group} case {k}?" for k in range(size + 1)]
        for k in range(size):
            a = texts[k] if rng.random() < 0.5 else texts[k].upper()
            # Chain to the next question, or back to an earlier one of the group (a star).
            other = texts[k + 1] if rng.random() < 0.5 else texts[rng.randrange(0, k + 1)]
            b = "  " + other.replace(" ", "   ")
            pairs.append(LabelledPair(f"g{group}-{k}", a, b, rng.random() < 0.4))
    return pairs


def test_no_question_on_two_sides() -> None:
    pairs = _pairs()
    assignment = component_split(pairs)
    assert set(assignment) == {p.id for p in pairs}
    side_of: dict[str, str] = {}
    for p in pairs:
        for text in (normalise(p.a), normalise(p.b)):
            assert side_of.setdefault(text, assignment[p.id]) == assignment[p.id], text


def test_shares_and_determinism() -> None:
    pairs = _pairs()
    assignment = component_split(pairs)
    assert assignment == component_split(pairs)
    counts = {s: sum(1 for p in pairs if assignment[p.id] == s) for s in SPLITS}
    assert all(counts.values())
    assert abs(counts["train"] / len(pairs) - 0.6) < 0.1
    assert assignment != component_split(pairs, seed=16)


def test_normalise_folds_case_and_spacing() -> None:
    assert normalise("  What IS\tthis?\n") == normalise("what is this?")
