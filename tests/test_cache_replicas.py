"""Read replicas (SEMANTIC_CACHE_PG_READ_URI) on a real streaming replica of the session's
Postgres: lookups read the replica, everything else the primary; a deleted entry is
served no longer than the replica lags; a dead or hung replica falls back to the primary
within the store timeout.

"Read from the replica" is shown by pausing its WAL replay: an entry written to the
primary after the pause is missed, and found once replay resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from semanticcache import CacheKey, CacheSettings, HashingEmbedder, SemanticCache
from semanticcache.errors import ConfigurationError, StorageError
from tests.faults import Relay
from tests.servers import PgReplica, free_port

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
LATER = "How do I bake sourdough bread?"

# The lookups' budget in the fallback tests; a fallback must answer within it.
BUDGET = 1.0
# Scheduling noise on a busy machine, on top of the budget.
SLACK = 0.5


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Liveness bound, not a timing assertion."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


@pytest.fixture
def replica_uri(pg_uri: str, pg_replica: PgReplica) -> str:
    """The module's database on the replica (its creation replayed there)."""
    pg_replica.wait_replayed(pg_uri)
    return pg_replica.uri_for(pg_uri)


@pytest.fixture
def scope() -> str:
    return secrets.token_hex(6)


def new_cache(
    pg_uri: str,
    read_uri: str,
    embedder: type[HashingEmbedder] = HashingEmbedder,
    **kwargs: Any,
) -> SemanticCache:
    settings = CacheSettings(pg_read_uri=(read_uri,))
    return SemanticCache(
        settings=settings, pg_uri=pg_uri, embedder=embedder(), threshold=0.9, **kwargs
    )


async def replayed(replica: PgReplica, pg_uri: str) -> None:
    await asyncio.to_thread(replica.wait_replayed, pg_uri)


@contextlib.asynccontextmanager
async def replay_paused(replica_uri: str) -> AsyncIterator[None]:
    """The replica receives WAL but applies none of it inside the block."""
    async with await psycopg.AsyncConnection.connect(replica_uri, autocommit=True) as conn:
        await conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_wal_replay_resume()")


async def rows_on(uri: str, table: str, entry_id: int) -> int:
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        cur = await conn.execute(f'SELECT count(*) FROM "{table}" WHERE id = %s', (entry_id,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_lookups_read_the_replica_and_writes_go_to_the_primary(
    pg_uri: str,
    replica_uri: str,
    pg_replica: PgReplica,
    scope: str,
    hashing_cls: type[HashingEmbedder],
) -> None:
    """Both lookup paths: embed, then the exact probe and the search in one statement;
    or the exact probe, then the search."""
    async with new_cache(pg_uri, replica_uri, hashing_cls) as cache:
        # The replica takes no writes: a put that succeeds wrote to the primary.
        entry_id = await cache.put(CacheKey(PROMPT, scope=scope), b"paris", raise_errors=True)
        assert entry_id is not None
        assert await rows_on(pg_uri, cache.table, entry_id) == 1
        await replayed(pg_replica, pg_uri)
        looked = await cache.lookup(CacheKey(PROMPT, scope=scope))
        exact = looked.hit
        assert exact is not None, looked
        assert (exact.match, exact.response) == ("exact", b"paris")
        looked = await cache.lookup(CacheKey(REWORDED, scope=scope))
        semantic = looked.hit
        assert semantic is not None, looked
        assert (semantic.match, semantic.response) == ("semantic", b"paris")

        async def in_recovery(pool: AsyncConnectionPool) -> bool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT pg_is_in_recovery()")
                row = await cur.fetchone()
            return bool(row and row[0])

        reads = cache.store.reads
        assert reads is not None
        assert await reads.run(in_recovery)

        async with replay_paused(replica_uri):
            later = CacheKey(LATER, scope=scope)
            later_id = await cache.put(later, b"sourdough", raise_errors=True)
            assert later_id is not None
            assert await rows_on(pg_uri, cache.table, later_id) == 1
            # On the primary, not yet on the replica the lookups read.
            assert await rows_on(replica_uri, cache.table, later_id) == 0
            missed = await cache.lookup(later)
            assert (missed.hit, missed.reason) == (None, "miss")
        await replayed(pg_replica, pg_uri)
        found = await cache.get(later)
        assert found is not None
        assert found.response == b"sourdough"


@pytest.mark.parametrize("hot_entries", [0, 100])
async def test_a_deleted_entry_is_served_no_longer_than_the_replica_lags(
    pg_uri: str,
    replica_uri: str,
    pg_replica: PgReplica,
    scope: str,
    hot_entries: int,
    hashing_cls: type[HashingEmbedder],
) -> None:
    """With hot entries on, the row a lookup reads from the lagging replica after the
    delete's notice must not be kept in memory: it would be served after the replay."""
    key = CacheKey(PROMPT, scope=scope)
    async with (
        new_cache(pg_uri, replica_uri, hashing_cls, hot_entries=hot_entries) as reader,
        new_cache(pg_uri, replica_uri) as writer,
    ):
        if hot_entries:

            async def listening() -> bool:
                return reader.hot_serving

            await eventually(listening)
        entry_id = await writer.put(key, b"paris", raise_errors=True)
        assert entry_id is not None
        await replayed(pg_replica, pg_uri)
        assert await reader.get(key) is not None
        async with replay_paused(replica_uri):
            assert await writer.delete(entry_id)
            if hot_entries:
                hot = reader._hot  # the notice has emptied the reader's memory

                async def notified() -> bool:
                    return len(hot) == 0

                await eventually(notified)
            # Within the replica's lag the entry may still be served (read there).
            stale = await reader.get(key)
            assert stale is not None
            assert stale.entry_id == entry_id
        await replayed(pg_replica, pg_uri)
        # Replayed: gone at once, from the replica and from any memory.
        assert await reader.get(key) is None
        assert await reader.get(CacheKey(REWORDED, scope=scope)) is None

        if hot_entries:
            # Once the replica has caught up, exact hits are kept again.
            again = CacheKey(LATER, scope=scope)
            await writer.put(again, b"sourdough", raise_errors=True)
            await replayed(pg_replica, pg_uri)

            async def kept() -> bool:
                await reader.get(again)
                return len(reader._hot) == 1

            await eventually(kept)


async def timed_get(cache: SemanticCache, key: CacheKey) -> float:
    started = time.perf_counter()
    hit = await cache.get(key)
    elapsed = time.perf_counter() - started
    assert hit is not None
    assert hit.response == b"paris"
    return elapsed


async def test_a_stopped_replica_falls_back_to_the_primary_within_the_budget(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, scope: str
) -> None:
    key = CacheKey(PROMPT, scope=scope)
    async with new_cache(
        pg_uri, replica_uri, store_timeout=BUDGET, breaker_failures=2, breaker_cooldown=60.0
    ) as cache:
        await cache.put(key, b"paris", raise_errors=True)
        await replayed(pg_replica, pg_uri)
        await timed_get(cache, key)  # the replica's pool has a connection now
        pg_replica.stop()
        try:
            for _ in range(4):
                assert await timed_get(cache, key) < BUDGET + SLACK
                assert await timed_get(cache, CacheKey(REWORDED, scope=scope)) < BUDGET + SLACK
            # The replica's breaker is open: the primary answers at once.
            assert await timed_get(cache, key) < BUDGET / 2
            assert await cache.put(CacheKey(LATER, scope=scope), b"x", raise_errors=True)
        finally:
            await asyncio.to_thread(pg_replica.start)
        await replayed(pg_replica, pg_uri)


async def test_a_hung_replica_falls_back_to_the_primary_within_the_budget(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, scope: str
) -> None:
    key = CacheKey(PROMPT, scope=scope)
    relay = Relay(replica_uri)
    relayed = await relay.start()
    try:
        async with new_cache(
            pg_uri, relayed, store_timeout=BUDGET, breaker_failures=2, breaker_cooldown=0.5
        ) as cache:
            await cache.put(key, b"paris", raise_errors=True)
            await replayed(pg_replica, pg_uri)
            await timed_get(cache, key)
            relay.hang()
            for _ in range(4):
                assert await timed_get(cache, key) < BUDGET + SLACK
                assert await timed_get(cache, CacheKey(REWORDED, scope=scope)) < BUDGET + SLACK
            relay.resume()
            reads = cache.store.reads
            assert reads is not None
            breaker = reads.replicas[0].breaker

            async def back() -> bool:
                await timed_get(cache, key)
                return breaker.state == "closed"

            # After its cool-down a trial read finds the replica again.
            await eventually(back)
    finally:
        await relay.close()


async def test_lookups_read_the_replica_while_the_primary_is_down(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, scope: str
) -> None:
    # Writes fail on a dead primary and open its breaker; the lookups the replica can
    # answer go on being answered, within their budget.
    key = CacheKey(PROMPT, scope=scope)
    relay = Relay(pg_uri)
    primary = await relay.start()
    try:
        async with new_cache(
            primary, replica_uri, store_timeout=BUDGET, breaker_failures=2, breaker_cooldown=60.0
        ) as cache:
            await cache.put(key, b"paris", raise_errors=True)
            await replayed(pg_replica, pg_uri)
            await timed_get(cache, key)
            relay.down()
            for _ in range(3):
                assert await cache.put(CacheKey(LATER, scope=scope), b"x") is None
            assert cache.breaker_states()["postgres"] == "open"
            for _ in range(4):
                assert await timed_get(cache, key) < BUDGET + SLACK
                assert await timed_get(cache, CacheKey(REWORDED, scope=scope)) < BUDGET + SLACK
            assert cache.breaker_states()["postgres_reads"] == "closed"
            relay.resume()
    finally:
        await relay.close()


async def test_a_cache_opens_within_the_budget_beside_a_hung_replica(
    pg_uri: str, replica_uri: str, scope: str
) -> None:
    key = CacheKey(PROMPT, scope=scope)
    relay = Relay(replica_uri)
    relayed = await relay.start()
    relay.hang()
    try:
        cache = new_cache(pg_uri, relayed, store_timeout=BUDGET, breaker_failures=2)
        try:
            started = time.perf_counter()
            # The first lookup opens the cache: within its budget, hung replica or not.
            assert await cache.get(key) is None
            assert time.perf_counter() - started < BUDGET + SLACK
            await cache.put(key, b"paris", raise_errors=True)
            for _ in range(3):
                assert await timed_get(cache, key) < BUDGET + SLACK
        finally:
            await cache.close()
    finally:
        await relay.close()


def test_a_malformed_read_uri_is_an_error_at_construction(pg_uri: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        new_cache(pg_uri, "postgresql://reader:s3cret-pw@127.0.0.1:99999/db")
    message = str(info.value)
    assert "SEMANTIC_CACHE_PG_READ_URI" in message
    assert "s3cret-pw" not in message


async def test_a_read_uri_the_replica_refuses_is_an_error_at_open(
    pg_uri: str, replica_uri: str
) -> None:
    wrong = make_conninfo(replica_uri, dbname="no_such_database", password="s3cret-pw")
    cache = new_cache(pg_uri, wrong)
    try:
        with pytest.raises(StorageError) as info:
            await cache.open()
        message = str(info.value)
        assert "SEMANTIC_CACHE_PG_READ_URI" in message
        assert "no_such_database" in message
        assert "s3cret-pw" not in message
    finally:
        await cache.close()


async def test_an_unreachable_replica_at_open_reads_the_primary(
    pg_uri: str, replica_uri: str, scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Nothing listens there; the password must reach no log line.
    down = make_conninfo(replica_uri, port=free_port(), password="s3cret-pw")
    key = CacheKey(PROMPT, scope=scope)
    async with new_cache(pg_uri, down, store_timeout=BUDGET) as cache:
        await cache.put(key, b"paris", raise_errors=True)
        for _ in range(3):
            assert await timed_get(cache, key) < BUDGET + SLACK
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "is unreachable" in logged
    assert "password=***" in logged
    assert "s3cret-pw" not in logged


async def test_a_table_without_statistics_is_analyzed_on_the_primary(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, scope: str
) -> None:
    """The plan policy analyzes a table without statistics; a replica cannot, so the
    ANALYZE goes to the primary and the statistics reach the replica by replication."""
    embedder = HashingEmbedder(dimension=40)  # a table of its own, never analyzed
    settings = CacheSettings(pg_read_uri=(replica_uri,))
    async with SemanticCache(
        settings=settings, pg_uri=pg_uri, embedder=embedder, threshold=0.9
    ) as cache:
        for n in range(10):
            await cache.put(CacheKey(f"{PROMPT} {n}", scope=scope), b"paris", raise_errors=True)
        await replayed(pg_replica, pg_uri)
        await cache.lookup(CacheKey(REWORDED, scope=scope))  # a search: the plan policy

        async def analyzed() -> bool:
            async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s",
                    (cache.table,),
                )
                row = await cur.fetchone()
            return row is not None and row[0] > 0

        await eventually(analyzed)
        await replayed(pg_replica, pg_uri)
        async with await psycopg.AsyncConnection.connect(replica_uri, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stats WHERE tablename = %s AND attname = 'partition'",
                (cache.table,),
            )
            row = await cur.fetchone()
        assert row == (1,)


async def test_each_replica_has_its_breaker_in_the_metrics(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, scope: str
) -> None:
    from prometheus_client import REGISTRY

    def state(dependency: str) -> float | None:
        return REGISTRY.get_sample_value("semcache_breaker_state", {"dependency": dependency})

    down = make_conninfo(replica_uri, port=free_port())  # nothing listens there
    settings = CacheSettings(pg_read_uri=(replica_uri, down), metrics=True, breaker_failures=1)
    key = CacheKey(PROMPT, scope=scope)
    async with SemanticCache(
        settings=settings,
        pg_uri=pg_uri,
        embedder=HashingEmbedder(),
        threshold=0.9,
        store_timeout=BUDGET,
        breaker_cooldown=60.0,
    ) as cache:
        assert (state("postgres_replica_1"), state("postgres_replica_2")) == (0, 0)
        await cache.put(key, b"paris", raise_errors=True)
        await replayed(pg_replica, pg_uri)
        for _ in range(2):  # the replicas in turn: the second one fails once
            await timed_get(cache, key)
        assert (state("postgres_replica_1"), state("postgres_replica_2")) == (0, 2)
        assert state("postgres") == 0


async def test_no_redis_refill_from_a_lagging_replica_after_an_epoch_advance(
    pg_uri: str, replica_uri: str, pg_replica: PgReplica, redis_url: str, scope: str
) -> None:
    """Redis refuses the tombstone of a delete, so the cache advances the Redis epoch
    instead: the lookups that follow read the lagging replica, which still has the row,
    and must not copy it to Redis under the new epoch (it would outlive the replay)."""
    from tests.test_cache_redis import redis_refusing_writes

    key = CacheKey(PROMPT, scope=scope)
    async with new_cache(pg_uri, replica_uri, redis_uri=redis_url, store_timeout=BUDGET) as cache:
        entry_id = await cache.put(key, b"paris", raise_errors=True)
        assert entry_id is not None
        await replayed(pg_replica, pg_uri)
        assert await cache.get(key) is not None
        async with replay_paused(replica_uri):
            with redis_refusing_writes(redis_url):
                assert await cache.delete(entry_id)
            # At once, before this process hears its own notice.
            stale = await cache.get(key)
            assert stale is not None  # read on the replica, within its lag
            background = cache._background._tasks  # a refill would run there
            await asyncio.gather(*background)
        await replayed(pg_replica, pg_uri)
        assert await cache.get(key) is None
