"""``report_wrong``: the entry leaves every tier of every process at once (hot memory
through the triggers, Redis through its tombstone or epoch), a negative example keeps
what the cache held, and another scope's entry is never touched."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from semanticcache import CacheKey, CacheSettings, HashingEmbedder, SemanticCache
from semanticcache._entry_token import entry_token

QUESTION = "What is the boiling point of water at sea level?"
WRONGLY = "what's the boiling point of water on Everest?"
KEY = secrets.token_bytes(32)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Liveness bound, not a timing assertion: notices arrive within milliseconds."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


def _cache(pg_uri: str, redis_url: str | None, *, hot: int = 100) -> SemanticCache:
    settings = CacheSettings(
        pg_uri=pg_uri, redis_uri=redis_url, threshold=0.9, hot_entries=hot, log_digest_key=KEY
    )
    return SemanticCache(settings=settings, embedder=HashingEmbedder(64))


@pytest.fixture
async def pair(pg_uri: str, redis_url: str) -> AsyncIterator[tuple[SemanticCache, SemanticCache]]:
    """Two processes' caches on one table, both with hot entries and Redis."""
    async with _cache(pg_uri, redis_url) as one, _cache(pg_uri, redis_url) as two:
        for cache in (one, two):

            async def ready(c: SemanticCache = cache) -> bool:
                return c.hot_serving

            await eventually(ready)
        yield one, two


async def _negatives(pg_uri: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        found = await (await conn.execute("SELECT to_regclass('semcache_negatives')")).fetchone()
        if found is None or found[0] is None:
            return []
        cur = await conn.execute(
            "SELECT cache_table, scope, partition, stored_text, lookup_text, reported_at "
            "FROM semcache_negatives ORDER BY id"
        )
        return list(await cur.fetchall())


async def _silence_redis_reads_elsewhere(pg_uri: str, table: str, entry_id: int) -> None:
    """Rewrite the row with the triggers off: a cache that still answers the old
    response got it from memory or Redis, not from Postgres."""
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn, conn.transaction():
        await conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        await conn.execute(f'UPDATE "{table}" SET response = %s WHERE id = %s', (b"pg", entry_id))
        await conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')


async def test_a_report_takes_the_entry_out_of_every_tier_and_keeps_a_negative(
    pair: tuple[SemanticCache, SemanticCache], pg_uri: str, redis_url: str
) -> None:
    one, two = pair
    scope = f"tenant-{secrets.token_hex(4)}"
    key = CacheKey(QUESTION, scope=scope, model="m")
    entry_id = await one.put(key, b"100 C", raise_errors=True)
    assert entry_id is not None
    # Both remember it (hot), and Redis holds its copy.
    for cache in (one, two):
        hit = await cache.get(key)
        assert hit is not None
        assert (hit.match, hit.response) == ("exact", b"100 C")
    await _silence_redis_reads_elsewhere(pg_uri, one.table, entry_id)
    async with _cache(pg_uri, redis_url, hot=0) as third:
        from_redis = await third.get(key)
        assert from_redis is not None
        assert from_redis.response == b"100 C"  # Redis's copy, not the row
    for cache in (one, two):
        hit = await cache.get(key)
        assert hit is not None
        assert hit.response == b"100 C"  # memory or Redis, not the row

    token = entry_token(KEY, one.table, entry_id)
    assert await one.report_wrong(token, scope=scope, lookup_text=WRONGLY)

    # The reporter at once; the other process once the notice arrives (milliseconds).
    assert await one.get(key) is None

    async def gone() -> bool:
        return await two.get(key) is None

    await eventually(gone, seconds=5)
    async with _cache(pg_uri, redis_url, hot=0) as third:
        assert await third.get(key) is None  # no Redis copy served either

    rows = await _negatives(pg_uri)
    assert len(rows) == 1
    table, kept_scope, partition, stored_text, lookup_text, _when = rows[0]
    assert (table, kept_scope, bytes(partition)) == (one.table, scope, key.partition)
    assert (stored_text, lookup_text) == (QUESTION, WRONGLY)
    # Reported twice: nothing left to report, no second negative.
    assert not await two.report_wrong(token, scope=scope)
    assert len(await _negatives(pg_uri)) == 1


async def test_another_scopes_entry_is_not_touched(
    pair: tuple[SemanticCache, SemanticCache], pg_uri: str
) -> None:
    one, _two = pair
    key = CacheKey(QUESTION, scope="tenant-a", model="m2")
    entry_id = await one.put(key, b"100 C", raise_errors=True)
    assert entry_id is not None
    before = len(await _negatives(pg_uri))
    token = entry_token(KEY, one.table, entry_id)
    assert not await one.report_wrong(token, scope="tenant-b")
    assert not await one.delete(entry_id, scope="tenant-b")
    # Same answer as for a token that names nothing.
    assert not await one.report_wrong(entry_token(KEY, one.table, 2**40), scope="tenant-b")
    assert not await one.report_wrong("not a token")
    hit = await one.get(key)
    assert hit is not None
    assert hit.entry_id == entry_id
    assert len(await _negatives(pg_uri)) == before
    assert await one.delete(entry_id, scope="tenant-a")
    assert await one.get(key) is None
    assert len(await _negatives(pg_uri)) == before  # a delete keeps no negative


async def test_a_process_without_redis_voids_the_copies_of_those_with_it(
    pg_uri: str, redis_url: str
) -> None:
    key = CacheKey("How many moons does Mars have?", scope="s", model="m3")
    async with _cache(pg_uri, redis_url, hot=0) as with_redis, _cache(pg_uri, None) as without:
        entry_id = await with_redis.put(key, b"two", raise_errors=True)
        assert entry_id is not None
        await _silence_redis_reads_elsewhere(pg_uri, with_redis.table, entry_id)
        hit = await with_redis.get(key)
        assert hit is not None
        assert hit.response == b"two"  # from Redis
        assert await without.report_wrong_id(entry_id)

        async def gone() -> bool:
            return await with_redis.get(key) is None

        await eventually(gone, seconds=5)
