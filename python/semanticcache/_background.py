"""The cache's background work: batched hit counts and near misses, the expiry purge,
Redis backfills."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

from semanticcache._results import CacheLookup
from semanticcache._storage import near_misses
from semanticcache._storage.near_misses import NearMiss
from semanticcache._storage.pgvector import PgVectorStore, similarity_bucket
from semanticcache.errors import StorageError

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")

# Distinct entries whose hits wait for a flush; past this, new ids are not counted
# (a bound on memory if Postgres stays unreachable).
_MAX_PENDING_HIT_IDS: Final = 100_000
# Near misses waiting for a flush: Postgres keeps no more per table, so when it does not
# answer the oldest give way.
_MAX_PENDING_NEAR_MISSES: Final = near_misses.KEPT


class Background:
    """Counts and near misses written in batches (a hit adds no round trip to its lookup,
    and a popular entry is updated once per flush), expired rows deleted at a bounded
    rate, and tasks started off a request's path; :meth:`stop` cancels them all."""

    def __init__(
        self,
        store: PgVectorStore,
        *,
        flush_interval: float,
        purge_interval: float | None,
        purge_batch: int,
        purge_pause: float,
    ) -> None:
        self._store = store
        self._flush_interval = flush_interval
        self._purge_interval = purge_interval  # None: entries never expire
        self._purge_batch = purge_batch
        self._purge_pause = purge_pause
        self.pending_hits: Counter[int] = Counter()
        self.pending_nearest: Counter[tuple[str, int]] = Counter()
        self.pending_near_misses: deque[NearMiss] = deque(maxlen=_MAX_PENDING_NEAR_MISSES)
        self._flush_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def count_hit(self, entry_id: int) -> None:
        if entry_id in self.pending_hits or len(self.pending_hits) < _MAX_PENDING_HIT_IDS:
            self.pending_hits[entry_id] += 1
        self._schedule_flush()

    def count_nearest(self, reason: str, similarity: float) -> None:
        # At most 5 outcomes x 100 buckets pending: flushed with the hit counts.
        self.pending_nearest[(reason, similarity_bucket(similarity))] += 1
        self._schedule_flush()

    def add_near_miss(self, near: NearMiss) -> None:
        self.pending_near_misses.append(near)
        self._schedule_flush()

    def count_lookup(self, result: CacheLookup) -> None:
        """Count a lookup's hit, and its nearest similarity when it ran a search."""
        if result.hit is not None:
            self.count_hit(result.hit.entry_id)
        nearest = result.nearest_similarity
        searched = result.hit is None or result.hit.match == "semantic"
        # NaN: a zero vector stored by hand (the cache refuses them) has no direction.
        if nearest is not None and math.isfinite(nearest) and searched:
            self.count_nearest(result.reason, nearest)

    async def flush(self) -> None:
        """Write the hit counts, nearest-similarity counts and near misses gathered so
        far."""
        if self.pending_hits:
            hits, self.pending_hits = self.pending_hits, Counter()
            await _write(self._store.add_hits, hits, "hit")
        if self.pending_nearest:
            nearest, self.pending_nearest = self.pending_nearest, Counter()
            await _write(self._store.add_nearest, nearest, "similarity")
        if self.pending_near_misses:
            near = list(self.pending_near_misses)
            self.pending_near_misses.clear()
            try:
                await near_misses.write(self._store.pool, self._store.table, near)
            except StorageError as exc:
                # Diagnostics: dropped rather than held while Postgres is away.
                _log.warning("dropped %d near misses: %s", len(near), exc)

    def _schedule_flush(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self.pending_hits or self.pending_nearest or self.pending_near_misses:
            await asyncio.sleep(self._flush_interval)
            await self.flush()

    def start_purge(self) -> None:
        if self._purge_interval is None:
            return
        if self._purge_task is None or self._purge_task.done():
            self._purge_task = asyncio.get_running_loop().create_task(
                self._purge_loop(self._purge_interval)
            )

    async def _purge_loop(self, interval: float) -> None:
        """Batches of ``purge_batch`` at least ``purge_pause`` apart while there is a
        backlog, then one every ``interval``."""
        while True:
            try:
                deleted = await self._store.purge_expired_batch(self._purge_batch)
            except StorageError as exc:
                _log.warning("background purge failed: %s", exc)
                deleted = 0
            if deleted:
                _log.debug("purged %d expired cache rows from %s", deleted, self._store.table)
            full = deleted >= self._purge_batch
            await asyncio.sleep(self._purge_pause if full else interval)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` off the caller's path, until it ends or :meth:`stop`."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel every background task and wait for each to end."""
        for task in (self._purge_task, self._flush_task, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._purge_task = self._flush_task = None


async def _write[K](
    write: Callable[[Mapping[K, int]], Awaitable[None]], counts: Counter[K], what: str
) -> None:
    try:
        await write(counts)
    except StorageError as exc:
        # The counts feed stats only: losing a second's worth beats piling them up.
        _log.warning("dropped %d %s counts: %s", sum(counts.values()), what, exc)
