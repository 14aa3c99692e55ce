"""SemanticCache with settings and CacheKey: configuration, scope column, isolation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semanticcache import (
    BaseEmbedder,
    CacheKey,
    ConfigurationError,
    HashingEmbedder,
    SemanticCache,
)
from semanticcache._settings import CacheSettings

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"


class SameVector(BaseEmbedder):
    """Every text gets the same vector: any isolation leak would be a perfect match."""

    def __init__(self, model_id: str = "same-vector-test") -> None:
        self.model_id = model_id
        self.dimension = 8

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * 7 for _ in texts]


class CheapSameVector(SameVector):
    """The same, on the embed-first path (exact probe and search in one statement)."""

    embeds_cheaply: ClassVar[bool] = True


@pytest.fixture
async def cache(pg_uri: str, hashing_cls: type[HashingEmbedder]) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(pg_uri=pg_uri, embedder=hashing_cls(), threshold=0.9) as c:
        yield c


def test_settings_configure_the_cache_and_kwargs_override() -> None:
    s = CacheSettings(
        pg_uri="postgresql://u:secret@127.0.0.1:5/db",
        threshold=0.8,
        top_k_candidates=4,
        rejection_threshold=0.9,
        pgvector_hnsw_ef_search=77,
        pg_pool_max_size=3,
    )
    cache = SemanticCache(embedder=HashingEmbedder(), settings=s)
    assert (cache.threshold, cache.settings.top_k_candidates) == (0.8, 4)
    assert cache.settings.rejection_threshold == 0.9
    assert cache.settings.pgvector_hnsw_ef_search == 77
    over = SemanticCache(embedder=HashingEmbedder(), settings=s, threshold=0.85, top_k=2)
    assert (over.threshold, over.settings.top_k_candidates) == (0.85, 2)
    assert over.settings.rejection_threshold == 0.9
    assert over.settings.pg_pool_max_size == 3
    assert "secret" not in repr(over.settings)


def test_overrides_are_validated_with_the_settings() -> None:
    s = CacheSettings(pg_uri="postgresql://127.0.0.1/db", threshold=0.8, rejection_threshold=0.9)
    # the override would put the threshold above the rejection threshold
    with pytest.raises(ConfigurationError, match="REJECTION_THRESHOLD"):
        SemanticCache(embedder=HashingEmbedder(), settings=s, threshold=0.95)
    with pytest.raises(ConfigurationError, match="TOP_K"):
        SemanticCache(embedder=HashingEmbedder(), settings=s, top_k=0)


async def test_key_and_partition_together_are_refused(cache: SemanticCache) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        await cache.get(CacheKey(PROMPT), partition=b"x")


async def test_cache_key_round_trip_stores_the_scope(cache: SemanticCache, pg_uri: str) -> None:
    scope = f"tenant-{secrets.token_hex(4)}"
    key = CacheKey(PROMPT, scope=scope, route="/chat", model="m")
    entry_id = await cache.put(key, b"paris")
    hit = await cache.get(CacheKey(REWORDED, scope=scope, route="/chat", model="m"))
    assert hit is not None
    assert (hit.entry_id, hit.match, hit.response) == (entry_id, "semantic", b"paris")
    exact = await cache.get(CacheKey(f"  {PROMPT}\n", scope=scope, route="/chat", model="m"))
    assert exact is not None
    assert exact.match == "exact"
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            f"SELECT scope, partition FROM {cache.table} WHERE id = %s", (entry_id,)
        )
        assert await cur.fetchone() == (scope, key.partition)


async def test_scopes_and_routes_never_share_entries(cache: SemanticCache) -> None:
    scope = secrets.token_hex(4)
    await cache.put(CacheKey(PROMPT, scope=scope, route="/a"), b"a")
    assert await cache.get(CacheKey(PROMPT, scope=scope + "x", route="/a")) is None
    assert await cache.get(CacheKey(PROMPT, scope=scope, route="/b")) is None
    assert await cache.get(CacheKey(PROMPT, scope=scope, route="/a", model="m")) is None


async def test_a_scope_with_nul_and_surrogates_is_stored(cache: SemanticCache) -> None:
    key = CacheKey("text \x00 with nul \ud800", scope=f"odd\x00scope\udfff{secrets.token_hex(2)}")
    await cache.put(key, b"ok")
    hit = await cache.get(key)
    assert hit is not None
    assert hit.response == b"ok"


_keys = st.builds(
    CacheKey,
    text=st.sampled_from(["q1", "q2", "q3"]),
    scope=st.sampled_from(["", "a", "b"]),
    route=st.sampled_from(["/x", "/y"]),
    model=st.none() | st.sampled_from(["m1", "m2"]),
    params_digest=st.sampled_from([b"", b"p"]),
)


@pytest.mark.parametrize("embedder_cls", [SameVector, CheapSameVector])
@settings(max_examples=20)
@given(stored=st.lists(_keys, min_size=1, max_size=6), probes=st.lists(_keys, max_size=6))
def test_no_lookup_returns_an_entry_of_another_partition(
    pg_uri: str, embedder_cls: type[SameVector], stored: list[CacheKey], probes: list[CacheKey]
) -> None:
    async def run() -> None:
        # A model id per example: a table of its own, empty at the start.
        embedder = embedder_cls(f"iso-{secrets.token_hex(6)}")
        # Every text is a candidate for every other ("q1" for "q2" too): the agreement
        # check, which would refuse those for their numbers, is not what this tests.
        async with SemanticCache(
            pg_uri=pg_uri, embedder=embedder, threshold=0.0, agreement_check=False
        ) as c:
            owner: dict[int, bytes] = {}
            for key in stored:
                entry_id = await c.put(key, key.partition)
                assert entry_id is not None
                owner[entry_id] = key.partition
            for key in [*probes, *stored]:
                hit = await c.get(key)
                if hit is not None:
                    assert owner[hit.entry_id] == key.partition
                    assert hit.response == key.partition
                else:
                    assert key.partition not in {k.partition for k in stored}
            async with c.store.pool.connection() as conn:
                await conn.execute(f"DROP TABLE {c.table}")

    asyncio.run(run())


async def test_concurrent_puts_of_the_same_key_leave_one_row(
    cache: SemanticCache, pg_uri: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    responses = {f"response {i}".encode() for i in range(20)}
    ids = await asyncio.gather(*(cache.put(key, r) for r in responses))
    assert len(set(ids)) == 1
    assert None not in ids
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            f"SELECT count(*) FROM {cache.table} WHERE partition = %s", (key.partition,)
        )
        assert await cur.fetchone() == (1,)
    hit = await cache.get(key)
    assert hit is not None
    assert hit.response in responses


async def test_a_closed_cache_opens_again(pg_uri: str) -> None:
    c = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder())
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    await c.put(key, b"before close")
    await c.close()
    hit = await c.get(key)  # a new pool: psycopg pools do not reopen
    assert hit is not None
    assert hit.response == b"before close"
    await c.close()
    await c.close()  # idempotent


async def test_concurrent_first_use_creates_the_schema_once(pg_uri: str) -> None:
    # Separate caches, separate pools: as several workers starting at once.
    caches = [
        SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension=200)) for _ in range(4)
    ]
    try:
        await asyncio.gather(*(c.open() for c in caches))
        ids = await asyncio.gather(
            *(c.put(CacheKey(f"q{i}", scope="race"), b"x") for i, c in enumerate(caches))
        )
        assert None not in ids
        assert len(set(ids)) == 4
    finally:
        await asyncio.gather(*(c.close() for c in caches))
