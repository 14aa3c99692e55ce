"""TTL, purge, delete, stats and batched hit counting on a real Postgres."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest

from semanticcache import CacheKey, ConfigurationError, HashingEmbedder, SemanticCache

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"


@pytest.fixture
async def cache(pg_uri: str, hashing_cls: type[HashingEmbedder]) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=hashing_cls(), threshold=0.9, ttl_days=1.0
    ) as c:
        yield c


async def expire(pg_uri: str, table: str, where: str, params: tuple[object, ...]) -> int:
    """Move rows' expiry into the past (time passing, without waiting for it)."""
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        cur = await conn.execute(
            f"UPDATE {table} SET expires_at = now() - interval '1 second' WHERE {where}",
            params,
        )
        return cur.rowcount


async def test_expiry_is_set_from_the_ttl(cache: SemanticCache, pg_uri: str) -> None:
    entry_id = await cache.put(CacheKey(PROMPT, scope=secrets.token_hex(4)), b"paris")
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            f"SELECT extract(epoch FROM expires_at - created_at) FROM {cache.table} WHERE id = %s",
            (entry_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert float(row[0]) == pytest.approx(86400, abs=1)


async def test_without_ttl_rows_never_expire(pg_uri: str) -> None:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder()) as c:
        entry_id = await c.put(CacheKey(PROMPT, scope=secrets.token_hex(4)), b"x")
        async with c.store.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT expires_at = 'infinity' FROM {c.table} WHERE id = %s", (entry_id,)
            )
            assert await cur.fetchone() == (True,)


async def test_expired_rows_are_never_served(cache: SemanticCache, pg_uri: str) -> None:
    scope = secrets.token_hex(4)
    entry_id = await cache.put(CacheKey(PROMPT, scope=scope), b"paris")
    assert await cache.get(CacheKey(PROMPT, scope=scope)) is not None
    assert await cache.get(CacheKey(REWORDED, scope=scope)) is not None
    assert await expire(pg_uri, cache.table, "id = %s", (entry_id,)) == 1
    exact = await cache.lookup(CacheKey(PROMPT, scope=scope))
    semantic = await cache.lookup(CacheKey(REWORDED, scope=scope))
    assert (exact.hit, exact.reason) == (None, "miss")
    assert (semantic.hit, semantic.reason) == (None, "miss")
    # a new put revives the key with a fresh expiry
    assert await cache.put(CacheKey(PROMPT, scope=scope), b"again") == entry_id
    hit = await cache.get(CacheKey(PROMPT, scope=scope))
    assert hit is not None
    assert hit.response == b"again"


async def test_purge_by_scope_partition_expired_and_all(pg_uri: str) -> None:
    # A table of its own, so that counts are exact.
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(dimension=24), ttl_days=1.0
    ) as c:
        keys = [CacheKey(f"question {i}", scope=f"s{i % 3}", route=f"/r{i % 2}") for i in range(12)]
        for key in keys:
            await c.put(key, b"r")
        with pytest.raises(ConfigurationError, match="selector"):
            await c.purge()
        with pytest.raises(ConfigurationError, match="all=True"):
            await c.purge(all=True, scope="s0")
        assert await c.purge(scope="nope") == 0
        assert await c.purge(scope="s0") == 4
        target = keys[1].partition  # scope s1, route /r1: questions 1 and 7
        assert await c.purge(partition=target) == 2
        assert await c.purge(expired=True) == 0
        await expire(pg_uri, c.table, "scope = %s", ("s2",))
        assert (await c.stats()).expired_rows == 4
        assert await c.purge(expired=True, scope="s1") == 0
        assert await c.purge(expired=True) == 4
        assert await c.purge(all=True) == 2
        assert (await c.stats()).rows == 0


async def test_background_purge_deletes_expired_rows_in_batches(pg_uri: str) -> None:
    async with SemanticCache(
        pg_uri=pg_uri,
        embedder=HashingEmbedder(dimension=40),
        ttl_days=1.0,
        purge_interval=0.05,
        purge_pause=0.01,
        purge_batch_size=7,
    ) as c:
        for i in range(30):
            await c.put(f"expiring {i}", b"r")
        await c.put("staying", b"r")
        await expire(pg_uri, c.table, "lookup_text LIKE 'expiring %%'", ())
        await c.get("staying")  # any operation starts the purge task lazily
        for _ in range(400):  # a liveness bound, not a timing assertion
            stats = await c.stats()
            if stats.rows == 1:
                break
            await asyncio.sleep(0.02)
        assert (stats.rows, stats.expired_rows) == (1, 0)
    # close() cancelled the background tasks
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_delete_by_id(cache: SemanticCache) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    entry_id = await cache.put(key, b"x")
    assert entry_id is not None
    assert await cache.delete(entry_id) is True
    assert await cache.delete(entry_id) is False
    assert await cache.get(key) is None


async def test_stats_rows_hits_scopes_and_outcomes(pg_uri: str) -> None:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(dimension=48), threshold=0.75
    ) as c:
        await c.put(CacheKey(PROMPT, scope="a"), b"1")
        await c.put(CacheKey(PROMPT, scope="b"), b"2")
        await c.put(CacheKey("How do I bake bread?", scope="b"), b"3")
        for _ in range(3):
            assert await c.get(CacheKey(PROMPT, scope="a")) is not None
        assert await c.get(CacheKey(REWORDED, scope="b")) is not None
        assert await c.get(CacheKey("Unrelated sourdough?", scope="a")) is None
        stats = await c.stats()
        assert (stats.rows, stats.hits, stats.expired_rows) == (3, 4, 0)
        assert {k: (v.rows, v.hits) for k, v in stats.scopes.items()} == {
            "a": (1, 3),
            "b": (2, 1),
        }
        assert stats.table_bytes > 0
        assert stats.lookups == {"hit": 4, "miss": 1}


async def test_hits_are_counted_after_the_lookup_returns(pg_uri: str) -> None:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(dimension=56), hit_flush_interval=0.01
    ) as c:
        entry_id = await c.put(PROMPT, b"x")
        for _ in range(5):
            await c.get(PROMPT)
        for _ in range(400):  # the background flush writes them; a liveness bound
            async with c.store.pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT hit_count FROM {c.table} WHERE id = %s", (entry_id,)
                )
                row = await cur.fetchone()
            if row == (5,):
                break
            await asyncio.sleep(0.01)
        assert row == (5,)


async def test_close_flushes_pending_hits(pg_uri: str) -> None:
    c = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension=64))
    entry_id = await c.put(PROMPT, b"x")
    await c.get(PROMPT)
    await c.get(PROMPT)
    await c.close()
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(f"SELECT hit_count FROM {c.table} WHERE id = %s", (entry_id,))
        assert await cur.fetchone() == (2,)


async def test_purge_older_than(pg_uri: str) -> None:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension=20)) as c:
        ids = [await c.put(CacheKey(f"aged {i}", scope=f"s{i % 2}"), b"r") for i in range(6)]
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
            await conn.execute(
                f"UPDATE {c.table} SET created_at = now() - interval '3 days' WHERE id = ANY(%s)",
                (ids[:4],),
            )
        with pytest.raises(ConfigurationError, match="older_than"):
            await c.purge(older_than=-1)
        with pytest.raises(ConfigurationError, match="all=True"):
            await c.purge(all=True, older_than=60)
        assert await c.purge(older_than=4 * 86400) == 0
        # Combined with a scope: only the aged rows of s0 (ids 0 and 2).
        assert await c.purge(older_than=2 * 86400, scope="s0") == 2
        assert await c.purge(older_than=2 * 86400) == 2
        # A replaced entry is young again: age counts from the last put.
        assert await c.put(CacheKey("aged 5", scope="s1"), b"new") == ids[5]
        assert await c.purge(older_than=3600) == 0
        assert (await c.stats()).rows == 2
