"""Semantic-hit throughput with the lookups on a read replica against the primary alone.

Two caches on the same table of the test session's Postgres: one reads the primary, the
other (``SEMANTIC_CACHE_PG_READ_URI``) a streaming replica of it on the same machine
(``pg_replica``). Each runs ``SEMCACHE_BENCH_CONCURRENCY`` concurrent lookups (default 8)
of reworded prompts (every one a semantic hit: embed, then one statement) for
``SEMCACHE_BENCH_SECONDS`` (default 0.5; 5 for a figure), primary and replica in turn,
``SEMCACHE_BENCH_ROUNDS`` times (default 1; 3 for a figure); prints lookups per second
and the ratio of the medians. The embedder is the zero-cost hashing one, so the figure
is the cache and Postgres, not a model.

    SEMCACHE_BENCH_SECONDS=5 SEMCACHE_BENCH_ROUNDS=3 .venv/bin/python -m pytest \\
        benches/bench_replicas.py -s -q
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import time

from tests.servers import PgReplica

from semanticcache import CacheKey, CacheSettings, HashingEmbedder, SemanticCache

SECONDS = float(os.environ.get("SEMCACHE_BENCH_SECONDS", "0.5"))
ROUNDS = int(os.environ.get("SEMCACHE_BENCH_ROUNDS", "1"))
CONCURRENCY = int(os.environ.get("SEMCACHE_BENCH_CONCURRENCY", "8"))
ENTRIES = int(os.environ.get("SEMCACHE_BENCH_ENTRIES", "500"))


def stored(i: int) -> str:
    return f"What is the capital of country number {i}?"


def reworded(i: int) -> str:
    return f"what is the capital of country number {i}, please"


async def lookups_per_second(cache: SemanticCache, scope: str) -> float:
    """Semantic hits per second over ``SECONDS`` with ``CONCURRENCY`` workers."""
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            hit = await cache.get(CacheKey(reworded(i % ENTRIES), scope=scope))
            assert hit is not None
            assert hit.match == "semantic"
            done += 1
            i += CONCURRENCY

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def test_semantic_hit_throughput_replica_against_primary(
    pg_uri: str, pg_replica: PgReplica
) -> None:
    # The module's database exists on the replica before a cache opens there.
    await asyncio.to_thread(pg_replica.wait_replayed, pg_uri)
    scope = secrets.token_hex(6)
    embedder = HashingEmbedder()
    pool = max(2, CONCURRENCY)
    primary = SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.85, pool_max_size=pool)
    replica = SemanticCache(
        settings=CacheSettings(pg_read_uri=(pg_replica.uri_for(pg_uri),)),
        pg_uri=pg_uri,
        embedder=embedder,
        threshold=0.85,
        pool_max_size=pool,
    )
    async with primary, replica:
        for i in range(ENTRIES):
            await primary.put(CacheKey(stored(i), scope=scope), b"capital %d" % i)
        await asyncio.to_thread(pg_replica.wait_replayed, pg_uri)
        # Warm both: pools filled, statements prepared, plan verdicts taken.
        for cache in (primary, replica):
            for i in range(min(ENTRIES, 4 * CONCURRENCY)):
                assert await cache.get(CacheKey(reworded(i), scope=scope)) is not None
        figures: dict[str, list[float]] = {"primary": [], "replica": []}
        for _ in range(ROUNDS):
            figures["primary"].append(await lookups_per_second(primary, scope))
            figures["replica"].append(await lookups_per_second(replica, scope))
    on_primary = statistics.median(figures["primary"])
    on_replica = statistics.median(figures["replica"])
    print(
        f"\nbench_replicas: {CONCURRENCY} concurrent semantic-hit lookups, {ENTRIES} entries, "
        f"{ROUNDS} x {SECONDS:g} s each: primary {on_primary:.0f}/s "
        f"({', '.join(f'{x:.0f}' for x in figures['primary'])}), replica {on_replica:.0f}/s "
        f"({', '.join(f'{x:.0f}' for x in figures['replica'])}), "
        f"ratio {on_replica / on_primary:.2f}x; load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    assert on_primary > 0
    assert on_replica > 0
