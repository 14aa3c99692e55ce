"""Store policy: which responses may be stored, and the background tasks that store them."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from starlette.types import Scope

from semanticcache import _native
from semanticcache._cache import SemanticCache
from semanticcache._key import CacheKey
from semanticcache._middleware.headers import header_values
from semanticcache._middleware.record import StoredResponse
from semanticcache._middleware.replay import replayable_headers
from semanticcache._middleware.singleflight import Lease, SingleFlight
from semanticcache.errors import ConfigurationError, RequestBodyError

__all__ = [
    "STORABLE_EXTENSION",
    "ResponseValidator",
    "StoreTasks",
    "storable_response",
    "storable_scope",
    "validated",
]

_log = logging.getLogger("semanticcache.middleware")

ResponseValidator = Callable[[int, Sequence[tuple[bytes, bytes]], bytes], "bool | Awaitable[bool]"]
"""``(status, headers, body) -> bool``: whether a response the store policy accepts may
be stored (sync or async)."""

STORABLE_EXTENSION: Final = "semanticcache.storable"
"""Key the middleware adds to ``scope["extensions"]`` (value ``{}``) when it calls the app
for a response it may store. Stored responses must be identity-encoded (one with a
``Content-Encoding`` is never stored), so an app that can choose, such as the proxy's
forwarder, answers those requests uncompressed."""


def storable_scope(scope: Scope) -> Scope:
    """``scope`` marked with :data:`STORABLE_EXTENSION`."""
    extensions = dict(scope.get("extensions") or {})
    extensions[STORABLE_EXTENSION] = {}
    return {**scope, "extensions": extensions}


def storable_response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    sse: bool,
    sse_complete: bool | None,
    cap: int,
    credential_headers: frozenset[bytes],
) -> StoredResponse | None:
    """What to store of a complete response, or ``None`` when the policy refuses it.
    ``sse_complete`` is whether an SSE body ended its last event (``None``: check here)."""
    if not 200 <= status <= 299:
        return None
    if header_values(headers, b"set-cookie"):
        return None
    for value in header_values(headers, b"content-encoding"):
        # Replays carry the stored bytes as they are: only identity bodies, so a hit
        # can never be a decoded body with an encoding header (or the reverse).
        if any(c.strip().lower() not in (b"", b"identity") for c in value.split(b",")):
            return None
    for value in header_values(headers, b"cache-control"):
        directives = {d.strip().split(b"=", 1)[0].lower() for d in value.split(b",")}
        if b"no-store" in directives or b"private" in directives:
            return None
    if sse:
        if not (sse_complete if sse_complete is not None else _sse_complete(body, cap)):
            return None
    elif not _is_json_object(body, cap):
        return None
    return StoredResponse(status, replayable_headers(headers, credential_headers), body, sse)


async def validated(
    validator: ResponseValidator | None, stored: StoredResponse, log_fields: str
) -> bool:
    """The validator's verdict on ``stored`` (``True`` without one); a failing validator
    means "do not store" (the client has its answer already)."""
    if validator is None:
        return True
    try:
        verdict = validator(stored.status, stored.headers, stored.body)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        _log.warning(
            "semantic cache: not stored %s reason=validator_error (%s)",
            log_fields,
            type(exc).__name__,
        )
        return False
    return bool(verdict)


def _sse_complete(body: bytes, cap: int) -> bool:
    tee = _native.StreamTee(max(cap, len(body)), sse=True)
    tee.push(body)
    tee.close()
    return tee.complete


def _is_json_object(body: bytes, cap: int) -> bool:
    try:
        _native.scan_request(body, max_bytes=max(cap, len(body), 1))
    except RequestBodyError:
        return False
    return True


class StoreTasks:
    """The stores running in the background, at most ``max_pending`` at once: past that a
    response is served but not stored, so a slow Postgres cannot make memory grow."""

    def __init__(
        self,
        cache: SemanticCache,
        single_flight: SingleFlight | None,
        *,
        max_pending: int,
        drain_timeout: float,
    ) -> None:
        if isinstance(max_pending, bool) or max_pending < 1:
            raise ConfigurationError("max_pending_stores must be >= 1")
        self.cache = cache
        self.single_flight = single_flight
        self.max_pending = max_pending
        self.drain_timeout = drain_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Stores started and not finished yet."""
        return len(self._tasks)

    def start(self, key: CacheKey, record: bytes, log_fields: str, lease: Lease | None) -> bool:
        """Start storing ``record``; the store task releases ``lease`` when done.
        ``False`` (nothing started, ``lease`` untouched) when too many are in flight."""
        if len(self._tasks) >= self.max_pending:
            _log.warning("semantic cache: store skipped, too many in flight %s", log_fields)
            return False
        task = asyncio.get_running_loop().create_task(self._store(key, record, log_fields, lease))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self, wait: float | None = None) -> None:
        """Wait for the stores in flight (at most ``wait`` seconds, default
        ``drain_timeout``); those still running then are cancelled."""
        if not self._tasks:
            return
        limit = self.drain_timeout if wait is None else wait
        _done, pending = await asyncio.wait(set(self._tasks), timeout=limit)
        for task in pending:
            task.cancel()
        if pending:
            _log.warning("semantic cache: %d stores cancelled at shutdown", len(pending))
            await asyncio.wait(pending)

    async def _store(
        self, key: CacheKey, record: bytes, log_fields: str, lease: Lease | None
    ) -> None:
        try:
            # SemanticCache.put fails open (logs, returns None) on dependency errors.
            entry_id = await self.cache.put(key, record)
        finally:
            # Waiters look the cache up once the lease is gone: store first.
            if lease is not None and self.single_flight is not None:
                await self.single_flight.release(lease)
        if entry_id is None:
            _log.info("semantic cache: response not stored %s", log_fields)
        else:
            _log.debug("semantic cache: stored entry=%d %s", entry_id, log_fields)
