"""Single-flight: concurrent identical misses make one call to the app, across processes.

Two layers. Inside one process, the first miss of a key registers an
:class:`asyncio.Event` that later identical misses wait on (no Postgres traffic for
them). Across processes and hosts, that first miss then takes a *lease row* in Postgres
(``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``, table ``semcache_leases``): the
one that gets the row is the leader and calls the app; the others poll the row until the
leader marks it done (its answer is stored, or it gave up) or their wait bound passes,
then look the cache up again and call the app themselves if there is still nothing. A
done row stays a few seconds, so a request that missed just before the store finished
looks again rather than leading a second call. A lease expires on its own, so a crashed
leader blocks nobody for longer than ``lease_seconds``; a leader that could not release
its lease (Postgres unreachable) tries again every half second until the row is marked
done or has expired (and at once when the middleware drains), so the others wait out
no more than the outage.

Lease queries run as the cache's own do (:meth:`SemanticCache.run_on_store`): each under
``store_timeout`` and the Postgres circuit breaker. Everything here fails open: a
Postgres error, a timeout or an open breaker while taking or polling a lease makes the
request call the app itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from semanticcache._cache import SemanticCache
from semanticcache._key import CacheKey
from semanticcache.errors import ConfigurationError, StorageError

__all__ = ["Lease", "SingleFlight"]

_log = logging.getLogger("semanticcache.middleware")

LEASE_TABLE: Final = "semcache_leases"
_DEFAULT_POLL: Final = 0.02
_DONE_SECONDS: Final = 5.0
# How often a release that failed is tried again (seconds).
_RETRY_SECONDS: Final = 0.5
# Expired lease rows are deleted by every this many releases of a process.
_CLEANUP_EVERY: Final = 256


@dataclass(eq=False, slots=True)
class Lease:
    """What :meth:`SingleFlight.acquire` hands out: ``leader`` calls the app and must
    :meth:`SingleFlight.release` the lease; ``waited`` should look the cache up again."""

    role: Literal["leader", "waited"]
    ident: bytes = b""
    token: bytes = b""
    local: asyncio.Event | None = field(default=None, repr=False)
    released: bool = False


class SingleFlight:
    """Leases per exact key (partition + lookup-text digest); see the module doc."""

    def __init__(
        self,
        cache: SemanticCache,
        *,
        lease_seconds: float = 30.0,
        wait_seconds: float | None = None,
        poll_interval: float = _DEFAULT_POLL,
        retry_interval: float = _RETRY_SECONDS,
    ) -> None:
        for name, value in (
            ("lease_seconds", lease_seconds),
            ("poll_interval", poll_interval),
            ("retry_interval", retry_interval),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be > 0 seconds, not {value}")
        self.cache = cache
        self.lease_seconds = lease_seconds
        self.wait_seconds = lease_seconds if wait_seconds is None else wait_seconds
        if not (math.isfinite(self.wait_seconds) and self.wait_seconds > 0):
            raise ConfigurationError(f"wait_seconds must be > 0, not {self.wait_seconds}")
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self._local: dict[bytes, asyncio.Event] = {}
        # Leases whose release failed: ident -> (token, when the row expires anyway).
        self._unreleased: dict[bytes, tuple[bytes, float]] = {}
        self._retrying: asyncio.Task[None] | None = None
        self._releases = 0
        self._table = sql.Identifier(LEASE_TABLE)

    async def acquire(self, key: CacheKey) -> Lease:
        """Become the leader of ``key``, or wait (bounded) for the current one to finish."""
        ident = key.partition + key.text_digest
        event = self._local.get(ident)
        if event is not None:
            # Another request of this process leads (or waits on another process).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait_seconds):
                    await event.wait()
            return Lease("waited")
        event = asyncio.Event()
        self._local[ident] = event
        token = secrets.token_bytes(16)
        lease = Lease("leader", ident, token, event)
        try:
            taken = await self._try_take(ident, token)
            if taken:
                return lease
            if taken is False:
                await self._wait_remote(ident)
        except StorageError as exc:
            _log.warning("semantic cache: single-flight unavailable (%s)", _cause_name(exc))
            return lease  # lead without a lease: the app is called, as without single-flight
        except BaseException:
            # Cancelled (the client left): let local waiters go. A row taken just before
            # expires on its own.
            self._finish_local(lease)
            raise
        self._finish_local(lease)
        return Lease("waited")

    async def release(self, lease: Lease) -> None:
        """End a leader's lease (after its answer was stored, or not)."""
        if lease.role != "leader" or lease.released:
            return
        self._finish_local(lease)
        try:
            await self._mark_done(lease.ident, lease.token)
        except StorageError as exc:
            # Other processes' identical misses would wait out the lease: mark it done
            # as soon as Postgres answers again.
            _log.warning("semantic cache: lease not released (%s)", _cause_name(exc))
            self._unreleased[lease.ident] = (lease.token, time.monotonic() + self.lease_seconds)
            if self._retrying is None or self._retrying.done():
                self._retrying = asyncio.get_running_loop().create_task(self._retry_releases())

    async def flush(self) -> None:
        """Try the releases that failed now (at shutdown: last); the retries go on for
        those that fail again."""
        with contextlib.suppress(StorageError):
            await self._release_unreleased()
        if not self._unreleased and self._retrying is not None:
            self._retrying.cancel()
            self._retrying = None

    async def _retry_releases(self) -> None:
        while self._unreleased:
            await asyncio.sleep(self.retry_interval)
            with contextlib.suppress(StorageError):  # still unreachable: again later
                await self._release_unreleased()

    async def _release_unreleased(self) -> None:
        now = time.monotonic()
        for ident, (token, until) in list(self._unreleased.items()):
            if until > now:  # else it expired on its own meanwhile
                await self._mark_done(ident, token)
            if self._unreleased.get(ident) == (token, until):  # not failed again meanwhile
                del self._unreleased[ident]

    async def _mark_done(self, ident: bytes, token: bytes) -> None:
        """Mark the lease row ``ident`` held with ``token`` done; :class:`StorageError`
        if that fails."""
        self._releases += 1
        cleanup = self._releases % _CLEANUP_EVERY == 0

        async def release(conn: psycopg.AsyncConnection[Any]) -> None:
            # The row stays "done" for a moment: a request that missed just before the
            # store finished then looks again instead of calling the app.
            await conn.execute(
                sql.SQL(
                    "UPDATE {t} SET done = true,"
                    " expires_at = now() + make_interval(secs => %s)"
                    " WHERE ident = %s AND token = %s"
                ).format(t=self._table),
                (_DONE_SECONDS, ident, token),
            )
            if cleanup:
                await conn.execute(
                    sql.SQL("DELETE FROM {t} WHERE expires_at < now()").format(t=self._table)
                )

        await self.cache.run_on_store(release)

    def _finish_local(self, lease: Lease) -> None:
        lease.released = True
        if lease.local is not None:
            lease.local.set()
            if self._local.get(lease.ident) is lease.local:
                del self._local[lease.ident]

    async def _try_take(self, ident: bytes, token: bytes) -> bool | None:
        """``True``: the lease is ours. ``None``: a leader finished moments ago (look
        the cache up). ``False``: a leader is at work. The table is the cache's own
        (created with its schema, when it opened)."""

        async def take(conn: psycopg.AsyncConnection[Any]) -> bool | None:
            # "OR token": a repeat of this very insert (its connection was lost after
            # the row was written) finds the row its own.
            cursor = await conn.execute(
                sql.SQL(
                    "INSERT INTO {t} (ident, token, expires_at)"
                    " VALUES (%s, %s, now() + make_interval(secs => %s))"
                    " ON CONFLICT (ident) DO UPDATE SET token = EXCLUDED.token,"
                    " done = false, expires_at = EXCLUDED.expires_at"
                    " WHERE {t}.expires_at < now() OR {t}.token = EXCLUDED.token"
                    " RETURNING 1"
                ).format(t=self._table),
                (ident, token, self.lease_seconds),
            )
            if await cursor.fetchone() is not None:
                return True
            cursor = await conn.execute(
                sql.SQL("SELECT done FROM {t} WHERE ident = %s").format(t=self._table), (ident,)
            )
            row = await cursor.fetchone()
            return None if row is None or row[0] else False

        return await self.cache.run_on_store(take)

    async def _wait_remote(self, ident: bytes) -> None:
        query = sql.SQL(
            "SELECT 1 FROM {t} WHERE ident = %s AND NOT done AND expires_at >= now()"
        ).format(t=self._table)

        async def leader_at_work(conn: psycopg.AsyncConnection[Any]) -> bool:
            cursor = await conn.execute(query, (ident,))
            return await cursor.fetchone() is not None

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.wait_seconds):
                while True:
                    await asyncio.sleep(self.poll_interval)
                    if not await self.cache.run_on_store(leader_at_work):
                        return


def _cause_name(exc: StorageError) -> str:
    # The driver's error type, never its message (it can quote parameters).
    cause = exc.__cause__
    return type(cause if cause is not None else exc).__name__
