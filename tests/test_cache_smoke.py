"""SemanticCache round trip on a real Postgres + pgvector: exact, semantic, miss, partitions."""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import psycopg
import pytest

from semanticcache import (
    BaseEmbedder,
    CacheHit,
    ConfigurationError,
    EmbedderError,
    HashingEmbedder,
    SemanticCache,
    StorageError,
)
from semanticcache._cache import lookup_digest
from semanticcache._storage.pgvector import table_name_for
from tests.servers import free_port

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
UNRELATED = "How do I bake sourdough bread?"


@pytest.fixture
async def cache(pg_uri: str, hashing_cls: type[HashingEmbedder]) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(pg_uri=pg_uri, embedder=hashing_cls(), threshold=0.9) as c:
        yield c


@pytest.fixture
def partition() -> bytes:
    """A partition of its own for each test (the module's database is shared)."""
    return secrets.token_bytes(32)


async def test_exact_hit_returns_the_stored_response(
    cache: SemanticCache, partition: bytes
) -> None:
    entry_id = await cache.put(PROMPT, b'{"answer": "Paris"}', partition=partition)
    hit = await cache.get(PROMPT, partition=partition)
    assert isinstance(hit, CacheHit)
    assert hit.match == "exact"
    assert hit.similarity == 1.0
    assert hit.response == b'{"answer": "Paris"}'
    assert hit.entry_id == entry_id
    assert isinstance(hit.created_at, datetime)
    assert hit.created_at.tzinfo is not None


async def test_semantic_hit_for_a_light_rewording(cache: SemanticCache, partition: bytes) -> None:
    await cache.put(PROMPT, b"paris", partition=partition)
    hit = await cache.get(REWORDED, partition=partition)
    assert hit is not None
    assert hit.match == "semantic"
    assert 0.9 <= hit.similarity < 1.0
    assert hit.response == b"paris"


async def test_miss_for_unrelated_text_and_empty_partition(
    cache: SemanticCache, partition: bytes
) -> None:
    assert await cache.get(PROMPT, partition=partition) is None
    await cache.put(PROMPT, b"paris", partition=partition)
    assert await cache.get(UNRELATED, partition=partition) is None


async def test_partitions_never_share_entries(cache: SemanticCache) -> None:
    tenant_a, tenant_b = secrets.token_bytes(32), secrets.token_bytes(32)
    await cache.put(PROMPT, b"for a", partition=tenant_a)
    assert await cache.get(PROMPT, partition=tenant_b) is None
    assert await cache.get(REWORDED, partition=tenant_b) is None
    await cache.put(PROMPT, b"for b", partition=tenant_b)
    hit_a = await cache.get(PROMPT, partition=tenant_a)
    hit_b = await cache.get(REWORDED, partition=tenant_b)
    assert hit_a is not None
    assert hit_a.response == b"for a"
    assert hit_b is not None
    assert hit_b.response == b"for b"


async def test_default_partition_is_empty_bytes(cache: SemanticCache) -> None:
    text = f"default partition probe {secrets.token_hex(8)}"
    await cache.put(text, b"x")
    hit = await cache.get(text, partition=b"")
    assert hit is not None
    assert hit.response == b"x"


async def test_put_replaces_the_entry_for_the_same_text(
    cache: SemanticCache, partition: bytes
) -> None:
    first = await cache.put(PROMPT, b"old", partition=partition)
    second = await cache.put(PROMPT, b"new", partition=partition)
    assert first == second
    hit = await cache.get(PROMPT, partition=partition)
    assert hit is not None
    assert hit.response == b"new"


async def test_hits_are_counted(cache: SemanticCache, partition: bytes, pg_uri: str) -> None:
    entry_id = await cache.put(PROMPT, b"paris", partition=partition)
    await cache.get(PROMPT, partition=partition)
    await cache.get(REWORDED, partition=partition)
    await cache.get(UNRELATED, partition=partition)
    await cache.flush_hits()  # hit counts are batched, off the lookup path
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            f"SELECT hit_count, lookup_text, text_digest FROM {cache.table} WHERE id = %s",
            (entry_id,),
        )
        row = await cur.fetchone()
    assert row == (2, PROMPT, lookup_digest(PROMPT))


async def test_long_lookup_text_round_trips(cache: SemanticCache, partition: bytes) -> None:
    # Far beyond a btree entry (~2.7 kB): only its digest is indexed.
    text = " ".join(f"word{i}" for i in range(40_000))
    await cache.put(text, b"long", partition=partition)
    hit = await cache.get(text, partition=partition)
    assert hit is not None
    assert hit.match == "exact"


async def test_schema_is_idempotent_and_has_the_hnsw_index(pg_uri: str) -> None:
    embedder = HashingEmbedder(dimension=32)
    for _ in range(2):
        async with SemanticCache(pg_uri=pg_uri, embedder=embedder) as c:
            assert c.table == "semcache_entries_hashing_v1_32"
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s",
            ("semcache_entries_hashing_v1_32",),
        )
        defs = [r[0] for r in await cur.fetchall()]
    assert any("USING hnsw (embedding vector_cosine_ops)" in d for d in defs)
    assert any("UNIQUE" in d and "(partition, text_digest)" in d for d in defs)
    assert not any("lookup_text" in d for d in defs)
    # The expiry index covers only rows that can expire: a lookup's "expires_at >
    # now()" can never pick it (see ensure_schema).
    (expiry,) = [d for d in defs if "(expires_at)" in d]
    assert "WHERE (expires_at < 'infinity'" in expiry
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'semcache_entries_hashing_v1_32'"
        )
        # room on each page for HOT hit_count updates (no new HNSW entry per hit)
        assert await cur.fetchone() == (["fillfactor=70"],)


async def test_a_popular_entry_stays_reachable_semantically(
    cache: SemanticCache, partition: bytes
) -> None:
    for i in range(300):
        await cache.put(f"filler question {i} on subject {i % 17}", b"-", partition=partition)
    await cache.put(PROMPT, b"paris", partition=partition)
    for _ in range(200):  # each hit updates hit_count of the same row
        assert await cache.get(PROMPT, partition=partition) is not None
    for _ in range(50):
        hit = await cache.get(REWORDED, partition=partition)
        assert hit is not None
        assert hit.response == b"paris"


class _WrongDimension(BaseEmbedder):
    def __init__(self) -> None:
        self.model_id = "wrong-dimension"
        self.dimension = 8

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] * 4 for _ in texts]


async def test_an_embedder_returning_bad_vectors_raises_embedder_error(pg_uri: str) -> None:
    async with SemanticCache(pg_uri=pg_uri, embedder=_WrongDimension()) as c:
        with pytest.raises(EmbedderError, match="dimension 4; expected 8"):
            await c.put("text", b"x")


@pytest.mark.parametrize("threshold", [-0.5, 1.01, math.nan])
def test_rejects_thresholds_outside_0_1(threshold: float) -> None:
    with pytest.raises(ConfigurationError, match="THRESHOLD"):
        SemanticCache(
            pg_uri="postgresql://x@127.0.0.1/db", embedder=HashingEmbedder(), threshold=threshold
        )


async def test_unreachable_server_open_raises_and_get_fails_open() -> None:
    port = free_port()  # nothing listens on it
    cache = SemanticCache(
        pg_uri=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        embedder=HashingEmbedder(),
        connect_timeout=2,
    )
    with pytest.raises(StorageError, match="could not connect"):
        await cache.open()
    result = await cache.lookup("anything")
    assert (result.hit, result.reason) == (None, "store_error")
    assert await cache.get("anything") is None
    assert await cache.put("anything", b"x") is None
    with pytest.raises(StorageError, match="store_error"):
        await cache.put("anything", b"x", raise_errors=True)
    await cache.close()


@pytest.mark.parametrize(
    ("model_id", "dimension", "expected"),
    [
        ("hashing-v1", 256, "semcache_entries_hashing_v1_256"),
        ("text-embedding-3-small", 1536, "semcache_entries_text_embedding_3_small_1536"),
        ("BAAI/bge-small-en-v1.5", 384, "semcache_entries_baai_bge_small_en_v1_5_384"),
        ("", 8, "semcache_entries_model_8"),
    ],
)
def test_table_names(model_id: str, dimension: int, expected: str) -> None:
    assert table_name_for(model_id, dimension) == expected


def test_long_model_ids_are_cut_and_kept_apart() -> None:
    a = table_name_for("x" * 100 + "a", 1024)
    b = table_name_for("x" * 100 + "b", 1024)
    assert a != b
    assert len(a) <= 63
    assert a.startswith("semcache_entries_xxx")
    assert a.endswith("_1024")
