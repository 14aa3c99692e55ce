"""HashingEmbedder: deterministic, normalized, word-overlap similarity."""

from __future__ import annotations

import math

import pytest

from semanticcache import BaseEmbedder, ConfigurationError, HashingEmbedder


def _cos(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


async def test_embeds_each_text_to_a_unit_vector_of_the_dimension() -> None:
    embedder = HashingEmbedder(dimension=64)
    vectors = await embedder.embed(["one text", "another, longer text here", ""])
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == 64
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0)
    assert isinstance(embedder, BaseEmbedder)
    assert embedder.model_id == "hashing-v1"
    assert embedder.dimension == 64


def test_is_stable_across_runs_and_machines() -> None:
    # Pinned values: a change of hash, features or weights changes every stored vector,
    # which must be a deliberate new model_id, not an accident.
    vector = HashingEmbedder(16).embed_one("Hello, world")
    expected = [0.20705, 0.0, 0.20705, -0.20705, -0.20705, 0.20705, 0.20705, 0.0]
    assert [round(x, 6) for x in vector[:8]] == expected
    assert round(vector[9], 6) == -0.591571


def test_case_and_punctuation_do_not_matter() -> None:
    embedder = HashingEmbedder()
    assert embedder.embed_one("What is the capital of France?") == embedder.embed_one(
        "what is the CAPITAL of france"
    )


def test_similarity_orders_rewording_above_unrelated_text() -> None:
    embedder = HashingEmbedder()
    base = embedder.embed_one("What is the capital of France?")
    reworded = _cos(base, embedder.embed_one("what is the capital of France, please"))
    unrelated = _cos(base, embedder.embed_one("How do I bake sourdough bread?"))
    assert 0.85 < reworded < 1.0
    assert unrelated < 0.5


@pytest.mark.parametrize("dimension", [0, 7, 16001])
def test_rejects_unusable_dimensions(dimension: int) -> None:
    with pytest.raises(ConfigurationError, match="dimension"):
        HashingEmbedder(dimension)


def test_only_in_process_embedders_declare_cheap_embedding() -> None:
    # The cache embeds before its exact probe only for these: a remote or model-based
    # embedder must keep the default, or every exact repeat would cost an embedding.
    from semanticcache._embedders.local import LocalEmbedder
    from semanticcache._embedders.openai import OpenAIEmbedder

    assert HashingEmbedder.embeds_cheaply is True
    assert BaseEmbedder.embeds_cheaply is False
    assert LocalEmbedder.embeds_cheaply is False
    assert OpenAIEmbedder.embeds_cheaply is False
