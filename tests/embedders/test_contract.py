"""The output checks every embedder shares: count, dimension, finite, non-zero."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from semanticcache import BaseEmbedder, EmbedderError
from semanticcache._embedders import check_embeddings
from semanticcache._embedders.base import batches


def test_accepts_and_converts_a_correct_answer() -> None:
    out = check_embeddings([[1, 0.5], (0.0, -2.0)], count=2, dimension=2)
    assert out == [[1.0, 0.5], [0.0, -2.0]]
    assert all(type(x) is float for vector in out for x in vector)


def test_accepts_an_empty_batch() -> None:
    assert check_embeddings([], count=0, dimension=3) == []


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([[1.0, 0.0]], "1 vector\\(s\\) for 2 text"),
        ([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], "3 vector\\(s\\) for 2 text"),
        ([[1.0, 0.0], [1.0]], "vector 1 of length 1, expected 2"),
        ([[1.0, 0.0], [1.0, 0.0, 0.0]], "vector 1 of length 3, expected 2"),
        ([[1.0, math.nan], [1.0, 0.0]], "a NaN or infinite value in vector 0"),
        ([[1.0, 0.0], [math.inf, 0.0]], "a NaN or infinite value in vector 1"),
        ([[1.0, 0.0], [0.0, 0.0]], "an all-zero vector 1"),
        ([[1.0, "0.5"], [1.0, 0.0]], "a non-number in vector 0"),
        ([[1.0, None], [1.0, 0.0]], "a non-number in vector 0"),
        ([[True, 0.5], [1.0, 0.0]], "a non-number in vector 0"),
        ([[1.0, 0.0], "ab"], "str as vector 1"),
        ([[1.0, 0.0], {"a": 1}], "dict as vector 1"),
        ({"data": []}, "dict, not a list"),
        ("ab", "str, not a list"),
        (None, "NoneType, not a list"),
    ],
)
def test_refuses_a_wrong_answer(vectors: object, message: str) -> None:
    with pytest.raises(EmbedderError, match=f"^my-model returned {message}"):
        check_embeddings(vectors, count=2, dimension=2, source="my-model")


class _Fixed(BaseEmbedder):
    """A custom embedder as a user writes one, answering with what it is given."""

    def __init__(self, answer: object) -> None:
        self.model_id = "fixed"
        self.dimension = 3
        self.answer = answer

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.check_output(len(texts), self.answer)


async def test_a_custom_embedder_uses_the_shared_check() -> None:
    assert await _Fixed([[0.0, 1.0, 0.0]]).embed(["x"]) == [[0.0, 1.0, 0.0]]
    with pytest.raises(EmbedderError, match=r"^_Fixed\(model_id='fixed', dimension=3\) returned"):
        await _Fixed([[0.0, 1.0]]).embed(["x"])
    # The default close hook exists and does nothing.
    await _Fixed([]).aclose()


def test_batches_keep_order_and_respect_the_size() -> None:
    texts = [str(i) for i in range(7)]
    assert list(batches(texts, 3)) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert list(batches([], 3)) == []
