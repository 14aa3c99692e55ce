"""The generated paraphrase pairs keep their splits apart and the demo out
(training/verifier/paraphrases.py)."""

from __future__ import annotations

from training.verifier.common import SPLITS
from training.verifier.paraphrases import FAMILIES, paraphrase_pairs

from semanticcache._cli.demo.questions import load_groups


def _norm(text: str) -> str:
    return " ".join(text.casefold().rstrip("?.").split())


def test_splits_share_no_question_and_hold_both_labels() -> None:
    pairs = paraphrase_pairs()
    side_of: dict[str, str] = {}
    for split in SPLITS:
        assert {p.label for p in pairs[split]} == {True, False}, split
        for p in pairs[split]:
            for text in (_norm(p.a), _norm(p.b)):
                # A question (an item's wording) never appears in two splits.
                assert side_of.setdefault(text, split) == split, text


def test_deterministic() -> None:
    assert paraphrase_pairs() == paraphrase_pairs()


def test_every_family_is_asked_in_every_split() -> None:
    pairs = paraphrase_pairs()
    families = {"howto", "duration", "cost", "what", "diff", "cause", "rec", "attr", "who"}
    assert len(FAMILIES) == len(families)
    for split in SPLITS:
        assert {p.kind for p in pairs[split] if p.label} == families, split


def test_no_demo_question_is_generated() -> None:
    demo = {_norm(q) for g in load_groups() for q in g.questions}
    for split in SPLITS:
        for p in paraphrase_pairs()[split]:
            assert _norm(p.a) not in demo, p.a
            assert _norm(p.b) not in demo, p.b


def test_look_alikes_differ_and_rewordings_render_fully() -> None:
    for split in SPLITS:
        for p in paraphrase_pairs()[split]:
            assert not set("{}") & set(p.a + p.b), (p.a, p.b)
            if not p.label:
                assert _norm(p.a) != _norm(p.b)
