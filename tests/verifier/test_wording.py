"""The share of words two texts hold in common (:func:`word_overlap`): what the verifier
reads to give a reordering of the same words its stricter threshold."""

from __future__ import annotations

import pytest

from semanticcache._verifier.wording import word_overlap


@pytest.mark.parametrize(
    ("a", "b", "share"),
    [
        ("from Paris to Rome", "from Rome to Paris", 1.0),  # the same words, reordered
        ("Is it safe?", "is IT safe", 1.0),  # case and punctuation aside
        ("red car", "blue bike", 0.0),
        ("the cat", "the the cat", 2 / 3),  # repeats count: 2 shared of 3
        ("how do I reset my router", "how can I reset my modem", 4 / 8),
        ("", "", 0.0),
        ("", "words", 0.0),
    ],
)
def test_the_share_of_words_held_in_common(a: str, b: str, share: float) -> None:
    assert word_overlap(a, b) == pytest.approx(share)
    assert word_overlap(b, a) == pytest.approx(share)
