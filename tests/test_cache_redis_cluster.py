"""The Redis tier on a Redis Cluster (``redis+cluster://``) and behind Sentinel
(``redis+sentinel://``): the same hits, tombstones and fail-open as on one server."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from semanticcache import CacheKey, HashingEmbedder, SemanticCache
from semanticcache._storage.redis_tier import RedisBlobStore
from tests.servers import RedisCluster, RedisSentinel, redis_client
from tests.test_cache_redis import PROMPT, REWORDED, delete_row, is_tombstone

BUDGET = 0.5  # store_timeout: the bound on every Redis call


def redis_cache(
    pg_uri: str,
    redis_uri: str,
    *,
    breaker_failures: int | None = None,
    breaker_cooldown: float | None = None,
) -> SemanticCache:
    """A cache on ``redis_uri`` with the hashing embedder and the Redis budget."""
    return SemanticCache(
        pg_uri=pg_uri,
        redis_uri=redis_uri,
        embedder=HashingEmbedder(),
        threshold=0.9,
        store_timeout=BUDGET,
        breaker_failures=breaker_failures,
        breaker_cooldown=breaker_cooldown,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-primary Redis Cluster on free loopback ports, stopped by PID."""
    servers = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
async def cluster_cache(pg_uri: str, cluster: RedisCluster) -> AsyncIterator[SemanticCache]:
    for port in cluster.ports:
        client = redis_client(port)
        try:
            client.flushall()
        finally:
            client.close()
    async with redis_cache(pg_uri, cluster.url) as c:
        yield c


def node_values(ports: list[int]) -> dict[bytes, tuple[int, bytes]]:
    """Every ``semcache:`` key on the primaries among these nodes: the port that holds
    it, and its value."""
    found: dict[bytes, tuple[int, bytes]] = {}
    for port in ports:
        client = redis_client(port)
        try:
            if client.info("replication")["role"] != "master":
                continue
            for key in client.keys("semcache:*"):
                value = client.get(key)
                if value is not None:
                    found[bytes(key)] = (port, bytes(value))
        finally:
            client.close()
    return found


async def redis_epoch(pg_uri: str, table: str) -> int:
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT epoch FROM semcache_redis_epochs WHERE cache_table = %s", (table,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_cluster_serves_exact_hits_from_redis(
    cluster_cache: SemanticCache, cluster: RedisCluster, pg_uri: str
) -> None:
    scope = secrets.token_hex(4)
    key = CacheKey(PROMPT, scope=scope)
    entry_id = await cluster_cache.put(key, b"paris")
    assert entry_id is not None
    semantic = await cluster_cache.lookup(CacheKey(REWORDED, scope=scope))
    assert semantic.hit is not None
    assert (semantic.hit.match, semantic.hit.response) == ("semantic", b"paris")
    assert len(node_values(cluster.ports)) == 1
    await delete_row(pg_uri, cluster_cache.table, entry_id)  # only the Redis copy is left
    hit = await cluster_cache.get(key)
    assert hit is not None
    assert (hit.match, hit.response, hit.entry_id) == ("exact", b"paris", entry_id)


async def test_cluster_keys_of_an_entry_share_one_slot_and_entries_spread(
    cluster_cache: SemanticCache, cluster: RedisCluster
) -> None:
    scope = secrets.token_hex(4)
    keys = [CacheKey(f"question number {i}", scope=scope) for i in range(24)]
    for key in keys:
        await cluster_cache.put(key, b"answer")
    stored = node_values(cluster.ports)
    assert len(stored) == len(keys)
    tier = RedisBlobStore(cluster.url, namespace=cluster_cache.table, ttl_seconds=60, timeout=5)
    client = redis_client(cluster.ports[0])
    try:
        for key in keys:
            name = tier.key(key.partition, key.text_digest)
            assert name in stored
            # The slot is the entry's (its hash tag: partition and text digest), and
            # the node that owns that slot holds the key.
            tag = (key.partition.hex() + key.text_digest.hex()).encode()
            slot = client.execute_command("CLUSTER", "KEYSLOT", name)
            assert slot == client.execute_command("CLUSTER", "KEYSLOT", tag)
            owner = next(
                port
                for start, end, (_, port, *_rest), *_ in client.execute_command("CLUSTER", "SLOTS")
                if start <= slot <= end
            )
            assert stored[name][0] == owner
    finally:
        client.close()
        await tier.close()
    # Entries are spread over the primaries, not pinned to one slot.
    assert len({port for port, _ in stored.values()}) > 1


async def test_cluster_delete_report_wrong_and_purge_leave_tombstones(
    cluster_cache: SemanticCache, cluster: RedisCluster, pg_uri: str
) -> None:
    scope = secrets.token_hex(4)
    deleted = CacheKey(PROMPT, scope=scope)
    reported = CacheKey("How do I bake bread?", scope=scope)
    purged = [CacheKey(f"purged question {i}", scope=scope + "p") for i in range(12)]
    first = await cluster_cache.put(deleted, b"paris")
    second = await cluster_cache.put(reported, b"flour")
    for key in purged:
        await cluster_cache.put(key, b"gone")
    assert first is not None
    assert second is not None
    before = await redis_epoch(pg_uri, cluster_cache.table)

    assert await cluster_cache.delete(first) is True
    assert await cluster_cache.get(deleted) is None
    assert await cluster_cache.report_wrong_id(second) is True
    assert await cluster_cache.get(reported) is None
    assert await cluster_cache.purge(scope=scope + "p") == len(purged)
    for key in purged:
        assert await cluster_cache.get(key) is None

    # Every copy became a tombstone on its own node (the purge's spans many slots), so
    # Redis took the changes and the epoch did not have to move.
    stored = node_values(cluster.ports)
    assert len(stored) == 2 + len(purged)
    assert all(is_tombstone(value) for _, value in stored.values())
    assert await redis_epoch(pg_uri, cluster_cache.table) == before


async def test_cluster_with_a_frozen_primary_fails_open_within_budget(
    pg_uri: str, tmp_path: Path
) -> None:
    servers = RedisCluster(tmp_path / "cluster")
    servers.start()
    frozen = servers.servers[0]
    try:
        async with redis_cache(
            pg_uri, servers.url, breaker_failures=1000
        ) as c:  # every lookup tries Redis
            scope = secrets.token_hex(4)
            keys = [CacheKey(f"question number {i}", scope=scope) for i in range(9)]
            for key in keys:
                await c.put(key, b"answer")
            holders = {port for port, _ in node_values(servers.ports).values()}
            assert frozen.port in holders  # some entries are behind the frozen node
            assert frozen.pid is not None
            # Stopped, not dead: its port still accepts connections, then nothing answers.
            os.kill(frozen.pid, signal.SIGSTOP)
            for key in keys:
                started = time.monotonic()
                result = await c.lookup(key)
                took = time.monotonic() - started
                assert result.reason == "hit"
                assert result.hit is not None
                assert result.hit.response == b"answer"
                # Redis gets at most its budget; Postgres answers.
                assert took < BUDGET + 0.5
            assert await c.put(CacheKey("while frozen", scope=scope), b"x") is not None
    finally:
        if frozen.pid is not None:
            os.kill(frozen.pid, signal.SIGKILL)
        servers.stop()


async def test_cluster_failover_serves_no_copy_until_the_epoch_moves(
    pg_uri: str, tmp_path: Path
) -> None:
    servers = RedisCluster(tmp_path / "cluster", replicas=1)
    servers.start()
    try:
        async with redis_cache(pg_uri, servers.url) as c:
            key = CacheKey(PROMPT, scope=secrets.token_hex(4))
            entry_id = await c.put(key, b"paris")
            assert entry_id is not None
            await delete_row(pg_uri, c.table, entry_id)  # only the Redis copy is left
            assert await c.get(key) is not None
            before = await redis_epoch(pg_uri, c.table)
            ((primary, _),) = node_values(servers.ports).values()
            # Its replica takes over (a coordinated failover: nothing is lost here, but
            # after a crash the new primary may lack what the old one acknowledged).
            client = redis_client(primary)
            try:
                port = int(client.info("replication")["slave0"]["port"])
                assert client.execute_command("WAIT", 1, 5000) == 1  # the replica has it
            finally:
                client.close()
            client, old = redis_client(port), redis_client(primary)
            try:
                # FORCE: no hand-shake with the old primary (slow on a busy machine).
                client.execute_command("CLUSTER", "FAILOVER", "FORCE")
                deadline = time.monotonic() + 10  # liveness bound
                # Until the old primary learns it was replaced, it still answers.
                while (client.info("replication")["role"], old.info("replication")["role"]) != (
                    "master",
                    "slave",
                ):
                    assert time.monotonic() < deadline, "the replica did not take over"
                    await asyncio.sleep(0.02)
            finally:
                client.close()
                old.close()
            for _ in range(100):  # the cache learns the new primary at its next call
                assert await c.get(key) is None
                if await redis_epoch(pg_uri, c.table) > before:
                    break
                await asyncio.sleep(0.02)
            assert await redis_epoch(pg_uri, c.table) > before
            assert await c.get(key) is None
            # New copies on the new primary serve again.
            fresh = CacheKey(REWORDED, scope=key.scope)
            fresh_id = await c.put(fresh, b"new")
            assert fresh_id is not None
            await delete_row(pg_uri, c.table, fresh_id)
            hit = await c.get(fresh)
            assert hit is not None
            assert hit.response == b"new"
    finally:
        servers.stop()


# Sentinel


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    servers = RedisSentinel(tmp_path / "sentinel", down_after_ms=300)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


async def test_sentinel_serves_exact_hits_from_the_master(
    pg_uri: str, sentinel: RedisSentinel
) -> None:
    async with redis_cache(pg_uri, sentinel.url) as c:
        key = CacheKey(PROMPT, scope=secrets.token_hex(4))
        entry_id = await c.put(key, b"paris")
        assert entry_id is not None
        assert len(node_values([sentinel.master.port])) == 1
        await delete_row(pg_uri, c.table, entry_id)
        hit = await c.get(key)
        assert hit is not None
        assert (hit.match, hit.response) == ("exact", b"paris")
        assert await c.delete(entry_id) is False  # already gone from Postgres
        other = CacheKey(REWORDED + "?", scope=key.scope)
        other_id = await c.put(other, b"x")
        assert other_id is not None
        assert await c.delete(other_id) is True
        assert await c.get(other) is None
        # The deleted entry's copy is a tombstone; the first one's copy is still there.
        values = [value for _, value in node_values([sentinel.master.port]).values()]
        assert sorted(is_tombstone(value) for value in values) == [False, True]


async def test_sentinel_failover_under_load_fails_open_then_uses_the_new_master(
    pg_uri: str, sentinel: RedisSentinel
) -> None:
    async with redis_cache(pg_uri, sentinel.url, breaker_failures=3, breaker_cooldown=0.1) as c:
        scope = secrets.token_hex(4)
        keys = [CacheKey(f"question number {i}", scope=scope) for i in range(8)]
        for key in keys:
            await c.put(key, b"answer")
        old_master = sentinel.master
        assert sentinel.master_port() == old_master.port
        before = await redis_epoch(pg_uri, c.table)
        slowest = 0.0
        failures: list[str] = []
        stop = asyncio.Event()

        async def load() -> int:
            nonlocal slowest
            done = 0
            while not stop.is_set():
                for key in keys:
                    started = time.monotonic()
                    result = await c.lookup(key)
                    slowest = max(slowest, time.monotonic() - started)
                    if result.hit is None or result.hit.response != b"answer":
                        failures.append(result.reason)
                    done += 1
                await asyncio.sleep(0)
            return done

        loops = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(0.3)
        assert old_master.pid is not None
        os.kill(old_master.pid, signal.SIGKILL)  # the master crashes
        old_master.stop()
        deadline = time.monotonic() + 20  # liveness bound: Sentinel's failover
        while sentinel.master_port() == old_master.port:
            assert time.monotonic() < deadline, "Sentinel did not fail over"
            await asyncio.sleep(0.05)
        new_port = sentinel.replica.port
        assert sentinel.master_port() == new_port
        # The cache reaches the new master on its own and, before it serves a copy
        # from it, voids the copies from before the failover.
        for _ in range(200):  # liveness bound: the breaker's cool-down, a reconnect
            if await redis_epoch(pg_uri, c.table) > before:
                break
            await asyncio.sleep(0.05)
        assert await redis_epoch(pg_uri, c.table) > before
        # A new entry lands on the new master.
        for _ in range(200):
            fresh = CacheKey(f"after the failover {secrets.token_hex(4)}", scope=scope)
            fresh_id = await c.put(fresh, b"new")
            assert fresh_id is not None
            if any(
                value[:8] == fresh_id.to_bytes(8, "big")
                for _, value in node_values([new_port]).values()
            ):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no copy was written to the new master")
        await asyncio.sleep(0.2)  # more load on the new master
        stop.set()
        done = sum(await asyncio.gather(*loops))
        assert done > 0
        assert failures == []
        assert slowest < 2 * BUDGET + 0.5
        await delete_row(pg_uri, c.table, fresh_id)  # served by the new master alone
        hit = await c.get(fresh)
        assert hit is not None
        assert hit.response == b"new"


async def test_sentinel_failover_to_a_replica_that_missed_a_tombstone_serves_no_stale_copy(
    pg_uri: str, sentinel: RedisSentinel
) -> None:
    async with redis_cache(pg_uri, sentinel.url, breaker_failures=3, breaker_cooldown=0.1) as c:
        key = CacheKey(PROMPT, scope=secrets.token_hex(4))
        entry_id = await c.put(key, b"paris")
        assert entry_id is not None
        ((name, (_, blob)),) = node_values([sentinel.master.port]).items()
        before = await redis_epoch(pg_uri, c.table)
        assert await c.delete(entry_id) is True
        # Replication is asynchronous: the replica may never get the tombstone the
        # master acknowledged. Make it so: the replica keeps the blob.
        replica = redis_client(sentinel.replica.port)
        try:
            replica.config_set("replica-read-only", "no")
            replica.set(name, blob, px=60_000)
        finally:
            replica.close()
        assert await c.get(key) is None
        old_master = sentinel.master
        assert old_master.pid is not None
        os.kill(old_master.pid, signal.SIGKILL)
        old_master.stop()
        deadline = time.monotonic() + 20  # liveness bound: Sentinel's failover
        while sentinel.master_port() == old_master.port:
            assert time.monotonic() < deadline, "Sentinel did not fail over"
            assert await c.get(key) is None
            await asyncio.sleep(0.02)
        # The new master holds the deleted entry's blob: it is never served.
        for _ in range(100):
            assert await c.get(key) is None
            if await redis_epoch(pg_uri, c.table) > before:
                break
            await asyncio.sleep(0.02)
        assert await redis_epoch(pg_uri, c.table) > before
        assert await c.get(key) is None
        assert node_values([sentinel.replica.port])[name][1] == blob
