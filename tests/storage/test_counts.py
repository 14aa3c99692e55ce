"""Hit and similarity counts written by several processes at once (three stores, each on
a session of its own, as three processes would be) all arrive: flushes that lock the same
rows never deadlock, whatever order each process gathered its counts in."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from functools import partial
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._key import lookup_digest
from semanticcache._storage.pgvector import PgVectorStore, connection_options

DIM = 8
# The plan a large table gets for the hit counts: a nested loop over the ids given, in
# their order (a small one is scanned whole, in the order of its pages).
_LARGE_TABLE_PLAN = " -c enable_hashjoin=off -c enable_mergejoin=off -c enable_seqscan=off"


@contextlib.asynccontextmanager
async def _stores(pg_uri: str, model_id: str, count: int) -> AsyncIterator[list[PgVectorStore]]:
    pools = [
        AsyncConnectionPool(
            pg_uri,
            min_size=1,
            max_size=1,
            kwargs={"autocommit": True, "options": connection_options(None) + _LARGE_TABLE_PLAN},
            open=False,
        )
        for _ in range(count)
    ]
    try:
        for pool in pools:
            await pool.open()
        stores = [PgVectorStore(pool, model_id=model_id, dimension=DIM) for pool in pools]
        for store in stores:
            await store.ensure_schema()
        yield stores
    finally:
        for pool in pools:
            await pool.close()


def _orders[K](keys: list[K]) -> list[list[K]]:
    """``keys`` (sorted) in three orders: ascending, descending, shuffled."""
    shuffled = keys[:]
    random.shuffle(shuffled)
    return [keys, keys[::-1], shuffled]


async def _all_at_once(
    pg_uri: str,
    lock_middle: str,
    params: tuple[object, ...],
    writes: Sequence[Callable[[], Coroutine[Any, Any, None]]],
) -> None:
    """Run ``writes`` while another session holds the row of the middle key: a write
    in ascending order locks the rows before it, one in descending order those after it,
    and both wait; then let them all go at the same moment. If the two hold what the
    other needs next, Postgres aborts one (a deadlock)."""
    async with await psycopg.AsyncConnection.connect(pg_uri) as holder:
        await holder.execute(lock_middle, params)
        tasks = [asyncio.create_task(write()) for write in writes]
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as watcher:
            async with asyncio.timeout(30):
                # Until every write waits (on the holder or on another write), or one
                # has ended already (aborted).
                while not any(task.done() for task in tasks):
                    row = await (await watcher.execute(waiting)).fetchone()
                    if row is not None and row[0] >= len(writes):
                        break
                    await asyncio.sleep(0.01)
        await holder.commit()
    await asyncio.gather(*tasks)  # a deadlock raises StorageError


async def test_similarity_counts_of_three_processes_flushed_at_once_all_arrive(
    pg_uri: str,
) -> None:
    model = f"counts-{secrets.token_hex(4)}"
    async with _stores(pg_uri, model, 3) as stores:
        table = stores[0].table
        keys = sorted((outcome, bucket) for outcome in ("hit", "miss") for bucket in range(50))
        await stores[0].add_nearest(dict.fromkeys(keys, 1))  # the rows exist: updates
        outcome, bucket = keys[len(keys) // 2]
        rounds = 3
        for _ in range(rounds):
            writes = [
                partial(store.add_nearest, dict.fromkeys(order, 1))
                for store, order in zip(stores, _orders(keys), strict=True)
            ]
            await _all_at_once(
                pg_uri,
                "SELECT 1 FROM semcache_similarity_counts"
                " WHERE cache_table = %s AND outcome = %s AND bucket = %s FOR UPDATE",
                (table, outcome, bucket),
                writes,
            )
        stats = await stores[0].stats()
    counted = sum(sum(buckets) for buckets in stats.nearest_similarity.values())
    assert counted == len(keys) * (1 + 3 * rounds)


async def test_hit_counts_of_three_processes_flushed_at_once_all_arrive(pg_uri: str) -> None:
    model = f"hits-{secrets.token_hex(4)}"
    async with _stores(pg_uri, model, 3) as stores:
        store = stores[0]
        ids = []
        for n in range(100):
            text = f"question {n}"
            vector = [1.0, *([0.0] * (DIM - 2)), float(n + 1)]
            entry = await store.put_entry(b"", lookup_digest(text), text, vector, b"answer")
            ids.append(entry.id)
        ids.sort()
        rounds = 3
        for _ in range(rounds):
            writes = [
                partial(each.add_hits, dict.fromkeys(order, 1))
                for each, order in zip(stores, _orders(ids), strict=True)
            ]
            lock = f'SELECT 1 FROM "{store.table}" WHERE id = %s FOR UPDATE'
            await _all_at_once(pg_uri, lock, (ids[len(ids) // 2],), writes)
        stats = await store.stats()
    assert stats.hits == len(ids) * 3 * rounds


async def test_hit_counts_aborted_as_a_deadlocks_victim_are_written_again(pg_uri: str) -> None:
    """A flush caught in a lock cycle (here with another session, set to wait longer
    before it checks for deadlocks, so the flush is the one Postgres aborts) loses
    nothing: its statement is run again once the cycle is broken."""
    model = f"victim-{secrets.token_hex(4)}"
    async with _stores(pg_uri, model, 1) as (store,):
        ids = []
        for n in range(2):
            text = f"question {n}"
            vector = [1.0, *([0.0] * (DIM - 2)), float(n + 1)]
            entry = await store.put_entry(b"", lookup_digest(text), text, vector, b"answer")
            ids.append(entry.id)
        first, second = sorted(ids)
        bump = f'UPDATE "{store.table}" SET hit_count = hit_count + 10 WHERE id = %s'
        async with await psycopg.AsyncConnection.connect(pg_uri) as other:
            await other.execute("SET deadlock_timeout = '10s'")
            await other.execute(bump, (second,))
            # The flush locks the first row, then waits for the second.
            flush = asyncio.create_task(store.add_hits({first: 1, second: 1}))
            async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as watch:
                async with asyncio.timeout(30):
                    while True:
                        row = await (
                            await watch.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE "
                                "datname = current_database() AND wait_event_type = 'Lock'"
                            )
                        ).fetchone()
                        if row is not None and row[0] >= 1:
                            break
                        await asyncio.sleep(0.01)
            # Now the other session wants the first row: a cycle, and the flush (checking
            # after the default 1 s) is aborted.
            await other.execute(bump, (first,))
            await other.commit()
        await flush
        stats = await store.stats()
    assert stats.hits == 2 * 10 + 2
