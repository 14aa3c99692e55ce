"""Read replicas: where the lookup path's reads go, and when rows read there may be kept.

Only the lookup path's reads (the exact probe, the similarity search, a candidate's
response) go to a replica; every write, purge, delete, the hit counts, the schema and the
``LISTEN`` connection stay on the primary. :class:`ReadPools` sends each read to the next
replica whose circuit breaker lets it through, with at most half of the read's budget;
a replica that fails or answers late counts a failure on its breaker and the read is
answered by the primary with the rest of the budget, so a dead replica never makes a
request wait longer than its store timeout.

A replica lags: a row deleted on the primary can still be read there for as long as the
replica takes to replay the delete. A lookup serving it meanwhile is acceptable; keeping
it (hot entries, a Redis refill) is not, as nothing would drop it again. The primary's
notices (see :mod:`semanticcache._storage.hot`) raise a fence: until every replica has
replayed the primary's WAL up to a position read after the notice, no row read by a
lookup is kept (:class:`ReplayFence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._breaker import CircuitBreaker

__all__ = ["ReadPools", "ReplayFence", "Replica"]

_log = logging.getLogger("semanticcache.cache")

# Share of a read's budget a replica gets before the primary is asked instead.
_REPLICA_SHARE: Final = 0.5
# Pauses between two looks at the replicas' replay position while the fence is up.
_FIRST_PAUSE: Final = 0.005
_MAX_PAUSE: Final = 0.5

# The insert position, not the written one: after an asynchronous commit (and so its
# notice) the commit record may not be written yet, but it is inserted.
_PRIMARY_LSN: Final = "SELECT pg_current_wal_insert_lsn()::text"
# On a server that is not in recovery (a replica promoted), its own position counts.
_REPLAYED: Final = (
    "SELECT CASE WHEN pg_is_in_recovery() "
    "THEN coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false) ELSE true END"
)


@dataclass(slots=True)
class Replica:
    """One read replica: its URI as shown in logs (password masked), its pool, its breaker."""

    shown: str
    pool: AsyncConnectionPool
    breaker: CircuitBreaker
    uri: str = field(default="", repr=False)
    opened: bool = False
    """Whether :attr:`pool` was opened once (a closed pool cannot open again)."""


class ReadPools:
    """The lookup path's pools: the replicas in turn, the primary (``primary()``, the
    current primary pool) when none is healthy or the one asked failed."""

    def __init__(
        self,
        primary: Callable[[], AsyncConnectionPool],
        replicas: Sequence[Replica],
        *,
        budget: float,
    ) -> None:
        self._primary = primary
        self.replicas = list(replicas)
        self._replica_budget = budget * _REPLICA_SHARE
        self._next = 0

    def _pick(self) -> Replica | None:
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._next + step) % count]
            if replica.breaker.allow():
                self._next = (self._next + step + 1) % count
                return replica
        return None

    async def run[T](self, work: Callable[[AsyncConnectionPool], Awaitable[T]]) -> T:
        """``work(pool)`` on a replica's pool, else on the primary's (see the module)."""
        replica = self._pick()
        if replica is None:
            return await work(self._primary())
        try:
            async with asyncio.timeout(self._replica_budget):
                result = await work(replica.pool)
        except asyncio.CancelledError:
            replica.breaker.release()
            raise
        except (psycopg.Error, OSError, TimeoutError) as exc:
            replica.breaker.failure()
            sqlstate = getattr(exc, "sqlstate", None)
            _log.info(
                "read replica %s failed (%s%s), reading the primary",
                replica.shown,
                type(exc).__name__,
                f" {sqlstate}" if sqlstate else "",
            )
        else:
            replica.breaker.success()
            return result
        return await work(self._primary())


class ReplayFence:
    """Whether every replica has replayed what the primary had written when the last
    notice arrived (see the module). :meth:`raise_` on each notice; :attr:`up` until a
    background watch has seen each replica's replay position pass the primary's."""

    def __init__(
        self,
        primary: Callable[[], AsyncConnectionPool],
        replicas: Sequence[Replica],
        *,
        timeout: float,
    ) -> None:
        self._primary = primary
        self._replicas = list(replicas)
        self._timeout = timeout
        self._raised = 0
        self._cleared = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """Whether rows read by a lookup may be older than the last notice."""
        return self._cleared != self._raised

    def raise_(self) -> None:
        """A notice arrived: rows read from a replica are not kept until it replayed past
        the primary's position now."""
        self._raised += 1
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while self.up:
            self._wake.clear()
            raised = self._raised
            try:
                async with asyncio.timeout(self._timeout):
                    lsn = await self._primary_lsn()
                replayed = await self._wait_replayed(lsn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                _log.debug("replica replay check failed (%s)", type(exc).__name__)
                await asyncio.sleep(_MAX_PAUSE)
                continue
            if replayed:
                # Notices that arrived meanwhile need a later position: the loop looks again.
                self._cleared = raised

    async def _primary_lsn(self) -> str:
        async with self._primary().connection() as conn:
            cur = await conn.execute(_PRIMARY_LSN)
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def _wait_replayed(self, lsn: str) -> bool:
        """True once every replica has replayed ``lsn``; False as soon as a newer notice
        arrived (a later position is needed). A replica that cannot be asked raises: the
        fence stays up (it may come back behind)."""
        pending = list(self._replicas)
        pause = _FIRST_PAUSE
        while pending:
            still = []
            for replica in pending:
                async with asyncio.timeout(self._timeout):
                    done = await _replayed(replica.pool, lsn)
                if not done:
                    still.append(replica)
            pending = still
            if pending:
                if self._wake.is_set():
                    return False
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
        return True


async def _replayed(pool: AsyncConnectionPool, lsn: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(_REPLAYED, (lsn,))
        row: Any = await cur.fetchone()
    return bool(row and row[0])
