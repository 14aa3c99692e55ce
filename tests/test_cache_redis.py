"""The Redis blob tier: exact hits from Redis, Postgres as the fall-back and the truth."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import redis

from semanticcache import CacheKey, HashingEmbedder, SemanticCache
from semanticcache.settings import CacheSettings
from tests.servers import RedisServer

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"


@pytest.fixture
async def cache(
    pg_uri: str, redis_url: str, hashing_cls: type[HashingEmbedder]
) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(
        pg_uri=pg_uri,
        redis_uri=redis_url,
        embedder=hashing_cls(),
        threshold=0.9,
        ttl_days=1.0,
    ) as c:
        yield c


def redis_keys(url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(client.keys("semcache:*"))  # type: ignore[arg-type]
    finally:
        client.close()


async def delete_row(pg_uri: str, table: str, entry_id: int) -> None:
    """Remove a row behind the cache's back (to prove a hit did not need it)."""
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(f"DELETE FROM {table} WHERE id = %s", (entry_id,))


async def test_exact_hit_comes_from_redis(
    cache: SemanticCache, pg_uri: str, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    entry_id = await cache.put(key, b"paris")
    assert entry_id is not None
    assert len(redis_keys(redis_url)) == 1
    await delete_row(pg_uri, cache.table, entry_id)
    hit = await cache.get(key)
    assert hit is not None
    assert (hit.match, hit.response, hit.entry_id) == ("exact", b"paris", entry_id)
    assert hit.created_at.tzinfo is not None


async def test_blob_ttl_follows_the_settings(pg_uri: str, redis_url: str) -> None:
    settings = CacheSettings(
        pg_uri=pg_uri, redis_uri=redis_url, pg_ttl_days=1.0, redis_ttl_seconds=600
    )
    async with SemanticCache(embedder=HashingEmbedder(), settings=settings) as c:
        await c.put(PROMPT, b"x")
        client = redis.Redis.from_url(redis_url)
        try:
            (key,) = client.keys("semcache:*")
            assert 590 <= client.ttl(key) <= 600
        finally:
            client.close()


async def test_semantic_hit_is_one_postgres_query(cache: SemanticCache) -> None:
    scope = secrets.token_hex(4)
    await cache.put(CacheKey(PROMPT, scope=scope), b"paris")
    result = await cache.lookup(CacheKey(REWORDED, scope=scope))
    assert result.hit is not None
    assert (result.hit.match, result.hit.response) == ("semantic", b"paris")


async def test_flushed_redis_falls_back_to_postgres_and_is_refilled(
    cache: SemanticCache, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    await cache.put(key, b"paris")
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    result = await cache.lookup(key)
    assert result.hit is not None
    assert (result.reason, result.hit.match, result.hit.response) == ("hit", "exact", b"paris")
    for _ in range(200):  # the blob goes back to Redis in the background
        if redis_keys(redis_url):
            break
        await asyncio.sleep(0.01)
    assert len(redis_keys(redis_url)) == 1


async def test_delete_and_purge_remove_the_blobs(cache: SemanticCache, redis_url: str) -> None:
    scope = secrets.token_hex(4)
    first = await cache.put(CacheKey(PROMPT, scope=scope), b"1")
    await cache.put(CacheKey("How do I bake bread?", scope=scope), b"2")
    await cache.put(CacheKey("Unrelated", scope=scope + "x"), b"3")
    assert len(redis_keys(redis_url)) == 3
    assert first is not None
    assert await cache.delete(first) is True
    assert len(redis_keys(redis_url)) == 2
    assert await cache.get(CacheKey(PROMPT, scope=scope)) is None
    assert await cache.purge(scope=scope) == 1
    assert len(redis_keys(redis_url)) == 1
    assert await cache.get(CacheKey("How do I bake bread?", scope=scope)) is None


async def test_redis_killed_and_restarted(
    pg_uri: str, tmp_path: Path, hashing_cls: type[HashingEmbedder]
) -> None:
    server = RedisServer(tmp_path / "redis")
    url = server.start()
    port = server.port
    try:
        async with SemanticCache(
            pg_uri=pg_uri,
            redis_uri=url,
            embedder=hashing_cls(dimension=128),
            threshold=0.9,
            store_timeout=1.0,
            breaker_failures=2,
            breaker_cooldown=0.2,
        ) as c:
            scope = secrets.token_hex(4)
            await c.put(CacheKey(PROMPT, scope=scope), b"paris")
            server.stop()
            # Redis is gone: Postgres answers, nobody sees an error.
            for text in (PROMPT, REWORDED, PROMPT):
                result = await c.lookup(CacheKey(text, scope=scope))
                assert result.reason == "hit"
                assert result.hit is not None
                assert result.hit.response == b"paris"
            assert await c.put(CacheKey("while redis is down", scope=scope), b"d") is not None
            hit = await c.get(CacheKey("while redis is down", scope=scope))
            assert hit is not None
            assert hit.match == "exact"

            server.start(port=port)
            await asyncio.sleep(0.25)  # the breaker's cool-down (not a timing assertion)
            for _ in range(100):  # liveness bound: the client reconnects on its own
                await c.put(CacheKey("after the restart", scope=scope), b"a")
                if redis_keys(url):
                    break
                await asyncio.sleep(0.05)
            assert len(redis_keys(url)) == 1
    finally:
        server.stop()
