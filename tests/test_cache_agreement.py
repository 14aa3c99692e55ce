"""The agreement check in SemanticCache, on real Postgres: a semantic candidate whose text
disagrees with the lookup's (numbers, negation, names, opposites) is not served."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import pytest

from semanticcache import BaseEmbedder, SemanticCache
from semanticcache._settings import CacheSettings

DIM = 8


def unit(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    return v


def at_similarity(sim: float) -> list[float]:
    """A unit vector with cosine ``sim`` to e0."""
    return [sim, math.sqrt(1.0 - sim * sim)] + [0.0] * (DIM - 2)


class SameVectorEmbedder(BaseEmbedder):
    """Every text is e0 (similarity 1 to every other) unless the test places it."""

    def __init__(self) -> None:
        self.model_id = "agreement-test"
        self.dimension = DIM
        self.vectors: dict[str, list[float]] = {}

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors.get(t, unit(0)) for t in texts]


@pytest.fixture
def embedder() -> SameVectorEmbedder:
    return SameVectorEmbedder()


def cache(pg_uri: str, embedder: BaseEmbedder, **kwargs: object) -> SemanticCache:
    return SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("What is 2 + 2?", "What is 2 + 3?"),
        ("Is coffee good for you?", "Is coffee not good for you?"),
        ("What is the capital of France?", "What is the capital of Spain?"),
        ("Why is sugar good for dogs?", "Why is sugar bad for dogs?"),
    ],
)
async def test_disagreeing_candidate_is_a_miss_with_its_reason(
    pg_uri: str, embedder: SameVectorEmbedder, stored: str, query: str
) -> None:
    partition = secrets.token_bytes(32)
    async with cache(pg_uri, embedder) as c:
        assert c.settings.agreement_check is True  # the default
        await c.put(stored, b"answer", partition=partition)
        result = await c.lookup(query, partition=partition)
        assert result.hit is None
        assert result.reason == "disagreement"
        assert result.best_similarity == pytest.approx(1.0)
        assert result.candidates == 1
        assert await c.get(query, partition=partition) is None
        assert (await c.stats()).lookups["disagreement"] == 2


async def test_paraphrase_still_hits(pg_uri: str, embedder: SameVectorEmbedder) -> None:
    partition = secrets.token_bytes(32)
    async with cache(pg_uri, embedder) as c:
        await c.put("How do I learn Python quickly?", b"python answer", partition=partition)
        result = await c.lookup("What is the fastest way to learn Python?", partition=partition)
        assert result.reason == "hit"
        assert result.hit is not None
        assert result.hit.match == "semantic"
        assert result.hit.response == b"python answer"


async def test_exact_hit_skips_the_check(pg_uri: str, embedder: SameVectorEmbedder) -> None:
    partition = secrets.token_bytes(32)
    async with cache(pg_uri, embedder) as c:
        await c.put("What is 2 + 2?", b"four", partition=partition)
        await c.put("What is 2 + 3?", b"five", partition=partition)
        for text, answer in (("What is 2 + 2?", b"four"), ("What is  2 + 3? ", b"five")):
            result = await c.lookup(text, partition=partition)
            assert result.hit is not None
            assert result.hit.match == "exact"
            assert result.hit.response == answer


async def test_setting_off_restores_plain_behaviour(
    pg_uri: str, embedder: SameVectorEmbedder
) -> None:
    partition = secrets.token_bytes(32)
    settings = CacheSettings(agreement_check=False)
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, settings=settings, threshold=0.9
    ) as c:
        assert c.settings.agreement_check is False
        await c.put("What is 2 + 2?", b"four", partition=partition)
        result = await c.lookup("What is 2 + 3?", partition=partition)
        assert result.reason == "hit"
        assert result.hit is not None
        assert result.hit.response == b"four"


async def test_next_agreeing_candidate_is_served_with_its_own_response(
    pg_uri: str, embedder: SameVectorEmbedder
) -> None:
    partition = secrets.token_bytes(32)
    embedder.vectors["What is 2 + 3?"] = at_similarity(0.99)
    embedder.vectors["What's 2 + 2?"] = at_similarity(0.97)
    async with cache(pg_uri, embedder, top_k=2) as c:
        await c.put("What is 2 + 3?", b"five", partition=partition)
        agreeing_id = await c.put("What's 2 + 2?", b"four", partition=partition)
        result = await c.lookup("What is 2 + 2?", partition=partition)
        assert result.reason == "hit"
        assert result.hit is not None
        # The search ships only the best candidate's response: this one was fetched.
        assert result.hit.response == b"four"
        assert result.hit.entry_id == agreeing_id
        assert result.hit.similarity == pytest.approx(0.97, abs=1e-4)
        assert result.best_similarity == pytest.approx(0.99, abs=1e-4)
        assert result.candidates == 2
    async with cache(pg_uri, embedder, top_k=1) as c:
        # With one candidate there is nothing to fall back on.
        result = await c.lookup("What is 2 + 2?", partition=partition)
        assert result.reason == "disagreement"


async def test_agreeing_candidate_still_meets_the_rejection_threshold(
    pg_uri: str, embedder: SameVectorEmbedder
) -> None:
    partition = secrets.token_bytes(32)
    embedder.vectors["What is 2 + 3?"] = at_similarity(0.99)
    embedder.vectors["What's 2 + 2?"] = at_similarity(0.95)
    async with cache(pg_uri, embedder, top_k=2, rejection_threshold=0.97) as c:
        await c.put("What is 2 + 3?", b"five", partition=partition)
        await c.put("What's 2 + 2?", b"four", partition=partition)
        result = await c.lookup("What is 2 + 2?", partition=partition)
        assert result.hit is None
        assert result.reason == "rejected"
        assert result.best_similarity == pytest.approx(0.99, abs=1e-4)


async def test_agreement_check_argument_is_validated(
    pg_uri: str, embedder: SameVectorEmbedder
) -> None:
    from semanticcache.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="AGREEMENT_CHECK"):
        cache(pg_uri, embedder, agreement_check="yes")


async def test_long_texts_are_checked_too(pg_uri: str, embedder: SameVectorEmbedder) -> None:
    # Past 8,192 characters the check runs on a worker thread: same verdicts.
    partition = secrets.token_bytes(32)
    context = "Please read the following notes carefully. " * 300
    async with cache(pg_uri, embedder) as c:
        await c.put(context + "What is 2 + 2?", b"four", partition=partition)
        refused = await c.lookup(context + "What is 2 + 3?", partition=partition)
        assert refused.reason == "disagreement"
        served = await c.lookup(context + "What's 2 + 2?", partition=partition)
        assert served.reason == "hit"
        assert served.hit is not None
        assert served.hit.response == b"four"
