"""The Redis blob tier: exact hits from Redis, Postgres as the fall-back and the truth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from semanticcache import CacheKey, HashingEmbedder, SemanticCache
from semanticcache._settings import CacheSettings
from semanticcache._storage.redis_tier import RedisBlobStore
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
    """The keys of the blobs (not of the tombstones) in Redis."""
    return sorted(redis_values(url))


def is_tombstone(value: bytes) -> bool:
    """A deleted row's marker: a 25-byte header of kind ``T`` and no response."""
    return len(value) == 25 and value[24:25] == b"T"


def redis_values(url: str) -> dict[bytes, bytes]:
    """Key -> value of every blob in Redis (tombstones left out)."""
    client = redis.Redis.from_url(url)
    try:
        keys = [bytes(k) for k in client.keys("semcache:*")]  # type: ignore[arg-type]
        values = client.mget(keys) if keys else []
        return {
            k: bytes(v)  # type: ignore[arg-type]
            for k, v in zip(keys, values, strict=True)
            if v is not None and not is_tombstone(bytes(v))  # type: ignore[arg-type]
        }
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


# Redis never out of step with Postgres: versions, tombstones, epochs, TTLs.


async def pg_answer(pg_uri: str, table: str, key: CacheKey) -> bytes | None:
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT response FROM {table} WHERE partition = %s AND text_digest = %s",
            (key.partition, key.text_digest),
        )
        row = await cur.fetchone()
    return None if row is None else bytes(row[0])


@contextlib.contextmanager
def redis_refusing_writes(url: str) -> Iterator[None]:
    """Redis answers reads but refuses every write that needs memory (a full server
    with ``noeviction``), until the block ends."""
    client = redis.Redis.from_url(url)
    limit = str(client.config_get("maxmemory")["maxmemory"])
    policy = str(client.config_get("maxmemory-policy")["maxmemory-policy"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        yield
    finally:
        client.config_set("maxmemory", limit)
        client.config_set("maxmemory-policy", policy)
        client.close()


@contextlib.asynccontextmanager
async def redis_paused(url: str, what: str) -> AsyncIterator[None]:
    """``CLIENT PAUSE`` (``WRITE`` or ``ALL``, for 1.5 s) over the block: Redis stalls
    those calls. Leaves once the pause is over (``UNPAUSE`` would stall too)."""
    client = redis.Redis.from_url(url)
    try:
        client.execute_command("CLIENT", "PAUSE", "1500", what)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.6
        yield
        await asyncio.sleep(max(0.0, end - loop.time()))
        assert client.ping()
    finally:
        client.close()


async def test_refilled_copy_lives_no_longer_than_its_row(
    cache: SemanticCache, pg_uri: str, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    entry_id = await cache.put(key, b"paris")
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(
            f"UPDATE {cache.table} SET expires_at = now() + interval '3 seconds' WHERE id = %s",
            (entry_id,),
        )
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
        result = await cache.lookup(key)
        assert result.hit is not None
        assert result.hit.response == b"paris"
        for _ in range(200):  # the refill runs in the background
            if client.keys("semcache:*"):
                break
            await asyncio.sleep(0.01)
        (stored,) = client.keys("semcache:*")
        # The tier's TTL is a day; the row has 3 seconds left.
        assert 0 < client.pttl(stored) <= 3000
    finally:
        client.close()


async def test_concurrent_puts_leave_redis_in_step_with_postgres(
    cache: SemanticCache, pg_uri: str, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    out_of_step = []
    for round_ in range(30):
        await asyncio.gather(*(cache.put(key, f"{round_}-{i}".encode()) for i in range(20)))
        truth = await pg_answer(pg_uri, cache.table, key)
        assert truth is not None
        hit = await cache.get(key)
        (copy,) = redis_values(redis_url).values()
        if hit is None or hit.response != truth or not copy.endswith(truth):
            out_of_step.append(round_)
    assert out_of_step == []


async def test_replace_while_redis_refuses_writes_never_serves_the_old_answer(
    cache: SemanticCache, pg_uri: str, redis_url: str, hashing_cls: type[HashingEmbedder]
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    async with SemanticCache(
        pg_uri=pg_uri, redis_uri=redis_url, embedder=hashing_cls(), threshold=0.9
    ) as other:  # another process's cache
        await cache.put(key, b"old")
        for c in (cache, other):
            hit = await c.get(key)
            assert hit is not None
            assert hit.response == b"old"
        with redis_refusing_writes(redis_url):
            assert await cache.put(key, b"new") is not None
            for _ in range(3):
                hit = await cache.get(key)
                assert hit is not None
                assert hit.response == b"new"
            # Redis still holds the old answer: it is just not served.
            (copy,) = redis_values(redis_url).values()
            assert copy.endswith(b"old")
            for _ in range(200):  # the other process learns it from the epoch's notice
                hit = await other.get(key)
                assert hit is not None
                if hit.response == b"new":
                    break
                await asyncio.sleep(0.01)
            assert hit is not None
            assert hit.response == b"new"
        for c in (cache, other):
            hit = await c.get(key)
            assert hit is not None
            assert hit.response == b"new"


@pytest.fixture
async def impatient(
    pg_uri: str, redis_url: str, hashing_cls: type[HashingEmbedder]
) -> AsyncIterator[SemanticCache]:
    """A cache with a 0.3 s budget per Redis call and a breaker that stays closed."""
    async with SemanticCache(
        pg_uri=pg_uri,
        redis_uri=redis_url,
        embedder=hashing_cls(),
        threshold=0.9,
        store_timeout=0.3,
        breaker_failures=100,
    ) as c:
        yield c


async def test_replace_while_redis_stalls_writes_never_serves_the_old_answer(
    impatient: SemanticCache, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    await impatient.put(key, b"old")
    async with redis_paused(redis_url, "WRITE"):  # reads answer, writes hang
        assert await impatient.put(key, b"new") is not None
        hit = await impatient.get(key)
        assert hit is not None
        assert hit.response == b"new"
    hit = await impatient.get(key)
    assert hit is not None
    assert hit.response == b"new"


async def test_a_stalled_redis_is_logged_as_a_timeout(
    impatient: SemanticCache, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    await impatient.put(key, b"paris")
    with caplog.at_level(logging.WARNING, logger="semanticcache.cache"):
        async with redis_paused(redis_url, "ALL"):
            hit = await impatient.get(key)
    assert hit is not None
    assert hit.response == b"paris"
    assert "redis unavailable, using Postgres: timeout after 0.3 s" in caplog.text
    assert "CancelledError" not in caplog.text


async def test_rows_purged_without_redis_are_not_served_from_redis(
    cache: SemanticCache, pg_uri: str, redis_url: str, hashing_cls: type[HashingEmbedder]
) -> None:
    scope = secrets.token_hex(4)
    key = CacheKey(PROMPT, scope=scope)
    await cache.put(key, b"paris")
    assert await cache.get(key) is not None
    # semcache purge without SEMANTIC_CACHE_REDIS_URI: Postgres only.
    async with SemanticCache(pg_uri=pg_uri, embedder=hashing_cls(), threshold=0.9) as plain:
        assert await plain.purge(scope=scope) == 1
    assert len(redis_keys(redis_url)) == 1  # the copy is still in Redis...
    async with SemanticCache(
        pg_uri=pg_uri, redis_uri=redis_url, embedder=hashing_cls(), threshold=0.9
    ) as fresh:
        assert await fresh.get(key) is None  # ...but is not served
    for _ in range(200):  # the running cache learns it from the epoch's notice
        if await cache.get(key) is None:
            break
        await asyncio.sleep(0.01)
    assert await cache.get(key) is None


async def test_deleted_rows_and_older_versions_cannot_be_written_back(
    cache: SemanticCache, redis_url: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    first = await cache.put(key, b"old")
    old = await cache.get(key)
    assert first is not None
    assert old is not None
    await cache.put(key, b"new")
    tier = RedisBlobStore(redis_url, namespace=cache.table, ttl_seconds=60, timeout=5.0)
    try:
        # A refill that read the replaced version (late, or under a newer epoch) loses.
        async def late_refill() -> bool:
            return await tier.set(
                key.partition,
                key.text_digest,
                entry_id=first,
                created_at=old.created_at,
                epoch=2**40,
                response=b"old",
                ttl_ms=60_000,
            )

        assert not await late_refill()
        hit = await cache.get(key)
        assert hit is not None
        assert hit.response == b"new"
        # A refill that read the row before it was deleted loses to its tombstone.
        assert await cache.delete(first) is True
        assert not await late_refill()
        assert redis_keys(redis_url) == []
        assert await cache.get(key) is None
        # A new row of the same key is newer than the tombstone.
        await cache.put(key, b"again")
        (copy,) = redis_values(redis_url).values()
        assert copy.endswith(b"again")
    finally:
        await tier.close()


async def test_no_copy_is_served_while_the_epoch_is_unknown(
    cache: SemanticCache, pg_uri: str
) -> None:
    key = CacheKey(PROMPT, scope=secrets.token_hex(4))
    entry_id = await cache.put(key, b"paris")
    assert entry_id is not None
    await delete_row(pg_uri, cache.table, entry_id)  # only the Redis copy is left
    assert await cache.get(key) is not None
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() "
            "AND query LIKE 'SELECT epoch FROM semcache_redis_epochs%%'"
        )
    for _ in range(200):  # the listener sees its connection go
        if not cache.hot_serving:
            break
        await asyncio.sleep(0.005)
    assert not cache.hot_serving
    # An epoch advance could be missed now: Redis is not trusted until it reconnects.
    assert await cache.get(key) is None
