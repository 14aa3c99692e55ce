"""Copies of exact rows in Redis: read, written, backfilled, voided when Redis misses a change.

Redis is an optimisation: its failures only mean "ask Postgres". A copy is written under
an epoch read before its row was read from or written to Postgres, and a copy older than
the current epoch is never served (see :mod:`semanticcache._storage.redis_tier`), nor
is any copy after a failover to a new primary until the epoch has been advanced.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from semanticcache._background import Background
from semanticcache._guard import Guard, StoreCall, Unavailable
from semanticcache._storage.hot import HotEntries
from semanticcache._storage.pgvector import PgVectorStore, StoredEntry
from semanticcache._storage.redis_tier import RedisBlob, RedisBlobStore

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")


class RedisCopies:
    """The cache's Redis tier (``redis`` ``None``: no Redis in this process; other
    processes may have one, so changes still void their copies)."""

    def __init__(
        self,
        redis: RedisBlobStore | None,
        guard: Guard,
        *,
        store: PgVectorStore,
        store_call: StoreCall,
        hot: HotEntries,
        background: Background,
    ) -> None:
        self.redis = redis
        self._guard = guard
        self._store = store
        self._store_call = store_call
        self._hot = hot
        self._background = background
        self._voiding_failover = False

    async def call[T](self, make: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """``(True, result)``, or ``(False, None)`` when Redis failed, timed out or its
        breaker is open."""
        try:
            # Redis commands end at once when cancelled: no task needed for a hard bound.
            return True, await self._guard.call(make, inline=True)
        except Unavailable as exc:
            if exc.reason == "store_timeout":
                _log.warning(
                    "redis unavailable, using Postgres: timeout after %g s", self._guard.budget
                )
            elif exc.cause is not None:
                cause = exc.cause.__cause__ if exc.cause.__cause__ is not None else exc.cause
                _log.warning("redis unavailable, using Postgres: %s", type(cause).__name__)
            return False, None

    async def get(self, partition: bytes, digest: bytes) -> tuple[bool, RedisBlob | None]:
        """Whether Redis answered, and the copy it holds for this exact text."""
        assert self.redis is not None
        redis = self.redis
        answered, blob = await self.call(lambda: redis.get(partition, digest))
        if redis.failover_pending:
            # The new primary may lack a tombstone or a newer copy the old one took:
            # no copy is served until the epoch has moved past them.
            self._void_failover(redis)
            return False, None
        return answered, blob

    def _void_failover(self, redis: RedisBlobStore) -> None:
        """Advance the epoch in the background after a Redis failover (one at a time;
        a failed advance is tried again by the next lookup)."""
        if self._voiding_failover:
            return
        self._voiding_failover = True
        seen = redis.failovers

        async def advance() -> None:
            try:
                epoch = await self._store_call(self._store.advance_redis_epoch)
            except Unavailable as exc:
                _log.error(
                    "redis failed over and the Redis epoch could not be advanced (%s): "
                    "no Redis copy is served until it is",
                    exc.describe(),
                )
                return
            finally:
                self._voiding_failover = False
            self._hot.note_redis_epoch(epoch)
            redis.failovers_voided(seen)
            _log.warning("redis failed over: copies written before are not served")

        self._background.spawn(advance())

    async def copy(self, partition: bytes, digest: bytes, entry: StoredEntry, epoch: int) -> bool:
        """Write ``entry`` (with its ``expires_at``) to Redis under ``epoch``, an epoch
        read before ``entry`` was read from or written to Postgres; whether Redis
        answered (a newer copy already there counts: it stays)."""
        assert self.redis is not None
        redis = self.redis
        ttl_ms = redis.ttl_seconds * 1000
        if entry.expires_at is not None:
            left = (entry.expires_at - datetime.now(UTC)).total_seconds()
            ttl_ms = min(ttl_ms, math.floor(left * 1000))
        if ttl_ms <= 0:
            # No lifetime left: no copy (older ones expire no later than their rows).
            return True
        answered, _ = await self.call(
            lambda: redis.set(
                partition,
                digest,
                entry_id=entry.id,
                created_at=entry.created_at,
                epoch=epoch,
                response=entry.response,
                ttl_ms=ttl_ms,
            )
        )
        return answered

    async def void(self, what: str) -> None:
        """Advance the table's Redis epoch: Redis could not take a change, so no copy
        written before is served again (here at once, elsewhere on the notice)."""
        try:
            epoch = await self._store_call(self._store.advance_redis_epoch)
        except Unavailable as exc:
            _log.error(
                "redis did not take %s and the Redis epoch could not be advanced (%s): "
                "other processes may serve the old Redis copy until its TTL",
                what,
                exc.describe(),
            )
            return
        self._hot.note_redis_epoch(epoch)

    def backfill(
        self, partition: bytes, digest: bytes, entry: StoredEntry | None, epoch: int
    ) -> None:
        """Copy the exact row (``entry`` when it carries its expiry, else read again) to
        Redis in the background; ``epoch``: read before the lookup read Postgres."""
        if self.redis is None:
            return

        async def backfill() -> None:
            row = entry
            if row is None:
                # The search's rows carry no expiry, and the copy must not outlive the row.
                with contextlib.suppress(Unavailable):
                    row = await self._store_call(lambda: self._store.get_exact(partition, digest))
            if row is not None:
                await self.copy(partition, digest, row, epoch)

        self._background.spawn(backfill())

    async def forget(self, keys: list[tuple[bytes, bytes, int]] | None) -> None:
        """Tombstone the Redis copies of deleted rows; without Redis (other processes may
        have it) or when Redis fails, void every copy instead."""
        if self.redis is not None and keys:
            redis = self.redis
            answered, _ = await self.call(lambda: redis.bury(keys))
            if answered:
                return
        await self.void("deleted entries")
