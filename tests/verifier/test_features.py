"""The wording features the verifier's tree model reads."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from semanticcache._verifier.features import FEATURES, MAX_WORDS, wording_features


def named(stored: str, lookup: str, similarity: float = 0.9) -> dict[str, float]:
    return dict(zip(FEATURES, wording_features(stored, lookup, similarity), strict=True))


def test_the_same_question_reworded_reordered_or_changed() -> None:
    same = named("How do I reset my router?", "how do i reset my router")
    assert same["similarity"] == 0.9
    assert same["jaccard_words"] == same["lcs_min"] == same["lcs_max"] == 1.0
    assert same["same_words_other_order"] == 0.0
    assert (same["len_min"], same["len_max"]) == (6.0, 6.0)
    swapped = named("flights from paris to rome", "flights from rome to paris")
    assert swapped["same_words_other_order"] == 1.0
    assert swapped["jaccard_words"] == 1.0
    assert swapped["lcs_max"] == 3 / 5
    numbers = named("What is 2 + 2?", "What is 2 + 3?")
    assert numbers["numbers_equal"] == 0.0
    assert numbers["agree"] == 0.0
    assert numbers["jaccard_numbers"] == 1 / 2
    negated = named("Is coffee bad for you?", "Is coffee not bad for you?")
    assert negated["negation_equal"] == 0.0
    other = named("What is the capital of France?", "Who painted the Mona Lisa?")
    assert other["only_one_side_content"] > 0
    assert other["jaccard_content"] < 0.3


words = st.text(alphabet="abc 12'", min_size=0, max_size=40)


@given(words, words, st.floats(-1.0, 1.0))
def test_the_features_are_symmetric_and_finite(a: str, b: str, similarity: float) -> None:
    forward = wording_features(a, b, similarity)
    assert forward == wording_features(b, a, similarity)
    assert len(forward) == len(FEATURES)
    assert all(x == x and abs(x) != float("inf") for x in forward)


def test_a_long_text_is_read_up_to_its_word_limit() -> None:
    long = " ".join(f"word{i}" for i in range(5_000))
    started = time.perf_counter()
    features = named(long, long[::-1])
    assert features["len_max"] <= MAX_WORDS
    # Quadratic in the words read, not in the text: well under a second.
    assert time.perf_counter() - started < 5.0
