"""The guard around every dependency call: a time budget, a circuit breaker, fail-open.

Postgres, Redis and the embedder are each called through one :class:`Guard`; a call that
fails, times out or finds its breaker open raises :class:`Unavailable`, which the cache
turns into a miss (or a skipped write) instead of an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, Protocol

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from semanticcache._breaker import CircuitBreaker
from semanticcache._results import LookupReason
from semanticcache._storage.redis_tier import RedisTimeoutError
from semanticcache.errors import StorageError

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")

Dependency = Literal["embed", "store", "redis", "verify"]

# What a dependency raises when it ran past its budget.
_TIMEOUTS: Final = (TimeoutError, PoolTimeout, psycopg.errors.QueryCanceled, RedisTimeoutError)

# Failures that fail open, by dependency; anything else from the store or Redis is a bug
# and propagates. Third-party embedders raise anything.
_FAILS_OPEN: Final[dict[Dependency, tuple[type[Exception], ...]]] = {
    "embed": (Exception,),
    "verify": (Exception,),
    "store": (StorageError, psycopg.Error, OSError),
    "redis": (StorageError,),
}

_TIMEOUT_REASONS: Final[dict[Dependency, LookupReason]] = {
    "embed": "embed_timeout",
    "store": "store_timeout",
    "redis": "store_timeout",
    "verify": "verify_timeout",
}
_ERROR_REASONS: Final[dict[Dependency, LookupReason]] = {
    "embed": "embed_error",
    "store": "store_error",
    "redis": "store_error",
    "verify": "verify_error",
}

_NAMES: Final[dict[Dependency, str]] = {
    "embed": "embedder",
    "store": "postgres",
    "redis": "redis",
    "verify": "verifier",
}


class Unavailable(Exception):
    """A dependency call failed, timed out or was skipped; ``reason`` says which."""

    def __init__(
        self, reason: LookupReason, dependency: Dependency, cause: BaseException | None = None
    ) -> None:
        super().__init__(reason)
        self.reason: LookupReason = reason
        self.dependency: Dependency = dependency
        self.cause = cause

    def describe(self) -> str:
        # Exception type and SQLSTATE only: messages can quote inputs (prompt text).
        if self.cause is None:
            name = _NAMES[self.dependency]
            return f"{self.reason} ({name})"
        cause = self.cause
        if isinstance(cause, StorageError) and cause.__cause__ is not None:
            cause = cause.__cause__  # the driver's error says more than our wrapper
        sqlstate = getattr(cause, "sqlstate", None)
        detail = f" {sqlstate}" if sqlstate else ""
        return f"{self.reason} ({type(cause).__name__}{detail})"


class Guard:
    """One dependency's breaker and budget (``None``: no budget)."""

    def __init__(
        self, dependency: Dependency, breaker: CircuitBreaker, budget: float | None
    ) -> None:
        self.dependency: Dependency = dependency
        self.breaker = breaker
        self.budget = budget

    async def call[T](self, make: Callable[[], Awaitable[T]], *, inline: bool = False) -> T:
        """``make()``'s result, or :class:`Unavailable`.

        ``inline``: ``make()`` ends at once when cancelled (a lookup-path read, a Redis
        command), so it runs in the caller's task under a plain timeout; otherwise it runs
        as a task given up at the budget (:func:`within`).
        """
        breaker = self.breaker
        dependency = self.dependency
        if not breaker.allow():
            raise Unavailable("breaker_open", dependency)
        try:
            if inline:
                async with asyncio.timeout(self.budget):
                    result = await make()
            else:
                result = await within(self.budget, make)
        except asyncio.CancelledError:
            breaker.release()
            raise
        except _TIMEOUTS as exc:
            breaker.failure()
            timeout = _TIMEOUT_REASONS[dependency]
            raise Unavailable(timeout, dependency, exc) from exc
        except Exception as exc:
            if not isinstance(exc, _FAILS_OPEN[dependency]):
                breaker.release()
                raise
            breaker.failure()
            failed = _ERROR_REASONS[dependency]
            raise Unavailable(failed, dependency, exc) from exc
        breaker.success()
        return result


# Calls given up at their budget, still unwinding (a server-side cancel, a connection
# being closed): held here so that they finish in the background.
_abandoned: set[asyncio.Future[Any]] = set()


async def within[T](budget: float | None, make: Callable[[], Awaitable[T]]) -> T:
    """``make()``'s result, or ``TimeoutError`` once ``budget`` seconds have passed.

    A hard bound: the call runs as a task of its own, cancelled at the budget without
    being waited for (cancelling a psycopg query can wait seconds on a stalled server);
    it finishes in the background, where its connection is discarded.
    """
    if budget is None:
        return await make()
    task = asyncio.ensure_future(make())
    try:
        done, _ = await asyncio.wait((task,), timeout=budget)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"no answer within {budget} s")
    return task.result()


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget_abandoned)


def _forget_abandoned(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Already reported as a timeout; its late error says nothing new.
        _log.debug("abandoned call ended with %s", type(task.exception()).__name__)


def connection_lost(exc: StorageError) -> bool:
    """Whether a store failure is its connection's loss (closed by the server, or
    found broken), rather than an error of the statement or of the server now."""
    cause = exc.__cause__
    if not isinstance(cause, psycopg.OperationalError) or isinstance(
        cause, PoolTimeout | PoolClosed | psycopg.errors.QueryCanceled
    ):
        return False
    # No SQLSTATE: libpq's own "server closed the connection"; 08: connection
    # exceptions; 57P01/57P02: the server terminated the session (shutdown).
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02")


class StoreCall(Protocol):
    """The cache's way to run one store operation under its store guard (opening the
    cache first); ``read``: a lookup-path read, run inline (see :meth:`Guard.call`)."""

    def __call__[T](
        self, make: Callable[[], Awaitable[T]], *, read: bool = False
    ) -> Awaitable[T]: ...
