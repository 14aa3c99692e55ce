"""One request's way through the middleware: gate, key, lookup, replay or call the app,
store."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from semanticcache._cache import CacheHit
from semanticcache._metrics import reset_route, route_label, set_route
from semanticcache._middleware.headers import (
    CacheControl,
    header_values,
    vary_names,
    with_headers,
)
from semanticcache._middleware.keying import Bypass, RequestKey
from semanticcache._middleware.record import encode_record
from semanticcache._middleware.replay import fresh_enough, replay
from semanticcache._middleware.responder import Responder, XCache
from semanticcache._middleware.singleflight import Lease
from semanticcache._middleware.store_policy import storable_scope, validated
from semanticcache._results import DECIDED_MISSES, CacheLookup
from semanticcache._tracing import REPLAY, UPSTREAM

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from semanticcache._middleware.asgi import SemanticCacheMiddleware
    from semanticcache._tracing import Tracing

__all__ = ["Flow"]

_log = logging.getLogger("semanticcache.middleware")

_REQUEST_ID_HEADER: Final = b"x-request-id"
_REQUEST_ID_SAFE: Final = re.compile(rb"[^A-Za-z0-9._:-]")


class Flow:
    """One request's state; made per request, since one middleware serves them all."""

    def __init__(self, mw: SemanticCacheMiddleware, scope: Scope, receive: Receive, send: Send):
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.key = RequestKey(mw, scope)
        self._request_id: str | None = None
        # The client went away before the response was complete (an aborted response).
        self.disconnected = False
        self.response_done = False
        # Body chunks read so far, replayed to the app before the real receive().
        self.chunks: list[bytes] = []
        self.body_complete = False
        # While the request span is recorded: the tracing its hooks start spans with,
        # and the request span's attributes, set on it at the end (one call: each
        # setting takes the span's lock). None otherwise: the hooks start no span.
        self.tracing: Tracing | None = None
        self.traced: dict[str, AttributeValue] | None = None

    @property
    def request_id(self) -> str:
        """The request's id in the logs: the client's ``X-Request-Id``, else a random
        one (made when the first line is logged)."""
        if self._request_id is None:
            values = header_values(self.key.headers, _REQUEST_ID_HEADER)
            if values:
                # Client-sent: keep it short and log-safe (no new lines, no escapes).
                self._request_id = _REQUEST_ID_SAFE.sub(b"", values[0])[:64].decode("ascii") or "-"
            else:
                self._request_id = secrets.token_hex(8)
        return self._request_id

    def log_fields(self, reason: str | None = None) -> str:
        fields = (
            f"route={self.scope['path']} scope={self.key.scope_digest} "
            f"request_id={self.request_id} text={self.key.text_digest}"
        )
        return fields if reason is None else f"{fields} reason={reason}"

    async def run(self) -> None:
        mw = self.mw
        if mw.metrics is None and mw.tracing is None:
            await self._run()
            return
        # The lookups, stores and calls of this request count under its route.
        route = route_label(self.scope, mw.path_prefix)
        token = set_route(route)
        try:
            if mw.tracing is None:
                await self._run()
                return
            attributes = {"http.request.method": self.scope["method"], "http.route": route}
            with mw.tracing.request(self.scope, attributes) as span:
                if not span.is_recording():
                    # Not sampled: the request span only carries the trace context.
                    await self._run()
                    return
                self.tracing = mw.tracing
                traced = self.traced = {}
                try:
                    await self._run()
                finally:
                    # Digested here, once: only a recorded span pays for them.
                    traced["semcache.scope"] = self.key.scope_digest
                    traced["semcache.text"] = self.key.text_digest
                    span.set_attributes(traced)
        finally:
            reset_route(token)

    def _trace_outcome(self, outcome: XCache, reason: str | None = None) -> None:
        traced = self.traced
        if traced is not None:
            traced["semcache.outcome"] = outcome
            if reason is not None:
                traced["semcache.reason"] = reason

    def _trace_lookup(self, lookup: CacheLookup) -> None:
        traced = self.traced
        assert traced is not None
        traced["semcache.reason"] = lookup.reason
        hit = lookup.hit
        similarity = hit.similarity if hit is not None else lookup.best_similarity
        if similarity is not None:
            traced["semcache.similarity"] = similarity
        # The nearest similarity is the search span's: each attribute costs a span.
        if hit is not None:
            traced["semcache.match"] = hit.match

    async def _run(self) -> None:
        metrics = self.mw.metrics
        try:
            control = self.key.gate()
            body = await self._read_body()
            key, stream = await self.key.build(body, Request(self.scope, self._replay_receive()))
        except Bypass as exc:
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("semantic cache: bypass %s", self.log_fields(exc.reason))
            if metrics is not None:
                metrics.bypass(exc.reason)
            self._trace_outcome("BYPASS", exc.reason)
            await self._pass_through("BYPASS")
            return
        mw = self.mw
        outcome: XCache = "MISS"
        lease: Lease | None = None
        if not control.no_cache:
            lookup = await mw.cache.lookup(key)
            if self.traced is not None:
                self._trace_lookup(lookup)
            hit = lookup.hit
            if hit is None and lookup.reason not in DECIDED_MISSES:
                outcome = "ERROR"
                _log.warning("semantic cache: lookup failed %s", self.log_fields(lookup.reason))
            elif hit is None and _log.isEnabledFor(logging.DEBUG):
                # The nearest similarity (a number, nothing of the prompt) is what a
                # threshold is tuned on.
                nearest = lookup.nearest_similarity
                _log.debug(
                    "semantic cache: miss %s nearest=%s",
                    self.log_fields(lookup.reason),
                    "none" if nearest is None else f"{nearest:.4f}",
                )
            if await self._serve(hit, control, stream):
                return
            if outcome == "MISS" and mw.single_flight is not None:
                started = time.perf_counter()
                lease = await mw.single_flight.acquire(key)
                if self.traced is not None:
                    self.traced["semcache.single_flight"] = lease.role
                if lease.role == "waited":
                    if metrics is not None:
                        metrics.waited(time.perf_counter() - started)
                    # The leader has finished: its answer is stored now (under the Vary
                    # names it may just have taught us), or it gave up.
                    key = await self.key.for_vary(mw.vary_for(self.key.target))
                    lookup = await mw.cache.lookup(key)
                    if self.traced is not None:
                        self._trace_lookup(lookup)
                    if await self._serve(lookup.hit, control, stream):
                        return
                    lease = None
        # Cache-Control: no-cache skips the lookup; the answer may still be stored.
        self._trace_outcome(outcome, "no_cache" if control.no_cache else None)
        # The key to store under follows from the response's Vary (_call_app_and_store).
        await self._call_app(control, outcome, lease)

    async def _serve(self, hit: CacheHit | None, control: CacheControl, stream: bool) -> bool:
        """Replay ``hit`` if there is one the request accepts; whether it was sent."""
        if hit is None or not fresh_enough(hit, control):
            return False
        mw = self.mw
        entry = mw.entry_header(hit.entry_id)
        sending = replay(
            hit,
            self.send,
            stream=stream,
            vary=self.key.vary,
            mode=mw.hit_response_mode,
            log_fields=self.log_fields,
            entry=entry,
        )
        if self.tracing is None:
            served = await sending
        else:
            # Match and similarity are the request span's.
            with self.tracing.leaf(REPLAY, {"semcache.entry": entry.decode("ascii")}) as span:
                served = await sending
                span.set_attribute("semcache.served", served)
            if served:
                self._trace_outcome("HIT")
        if served and mw.metrics is not None:
            mw.metrics.served_hit()
        return served

    async def _read_body(self) -> bytes:
        cap = self.mw.settings.max_body_bytes
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise Bypass("disconnected")
            chunk: bytes = message.get("body", b"")
            if chunk:
                self.chunks.append(chunk)
                size += len(chunk)
            if not message.get("more_body", False):
                self.body_complete = True
                break
            if size > cap:
                raise Bypass("body_too_large")
        if size > cap:
            raise Bypass("body_too_large")
        return b"".join(self.chunks)

    def _replay_receive(self) -> Receive:
        """The app's receive(): the chunks read so far, each as it came, then the real
        receive(), which waits for the client's next message (a disconnect, usually)."""
        # A deque: a body can come in very many small chunks (popping a list's head
        # would make replaying them quadratic).
        pending = deque(self.chunks)
        complete = self.body_complete
        disconnected = self.disconnected
        if not pending and complete:
            pending.append(b"")

        async def receive() -> Message:
            if pending:
                chunk = pending.popleft()
                more = bool(pending) or not complete
                return {"type": "http.request", "body": chunk, "more_body": more}
            if disconnected:
                return {"type": "http.disconnect"}
            message = await self.receive()
            if message["type"] == "http.disconnect" and not self.response_done:
                self.disconnected = True
            return message

        return receive

    async def _pass_through(self, outcome: XCache) -> None:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = with_headers(message, [(b"x-cache", outcome.encode())])
            await self.send(message)

        tracing = self.tracing
        if tracing is None:
            await self.mw.app(self.scope, self._replay_receive(), send)
            return
        with tracing.span(UPSTREAM):
            await self.mw.app(self.scope, self._replay_receive(), send)

    async def _call_app(self, control: CacheControl, outcome: XCache, lease: Lease | None) -> None:
        mw = self.mw
        handed_over = False
        try:
            handed_over = await self._call_app_and_store(control, outcome, lease)
        finally:
            if lease is not None and not handed_over and mw.single_flight is not None:
                await mw.single_flight.release(lease)

    async def _app_within(self, scope: Scope, responder: Responder, budget: float | None) -> None:
        async with asyncio.timeout(budget) as deadline:
            if budget is not None:
                responder.keep_alive = (deadline, budget)
            await self.mw.app(scope, self._replay_receive(), responder.send)

    async def _call_app_and_store(
        self, control: CacheControl, outcome: XCache, lease: Lease | None
    ) -> bool:
        """Call the app, send its answer, start the store; whether a store task took
        over ``lease``."""
        mw = self.mw
        responder = Responder(self, outcome, tee=mw.response_mode == "tee")
        timeout = mw.settings.upstream_timeout_seconds
        scope = self.scope if control.no_store else storable_scope(self.scope)
        started = time.perf_counter()
        try:
            if self.tracing is None:
                await self._app_within(scope, responder, timeout)
            else:
                with self.tracing.span(UPSTREAM):
                    await self._app_within(scope, responder, timeout)
        except TimeoutError:
            _log.warning("semantic cache: upstream timed out %s", self.log_fields("timeout"))
            self._trace_outcome(responder.outcome, "timeout")
            await responder.timed_out()
            return False
        finally:
            if mw.metrics is not None:
                mw.metrics.upstream(time.perf_counter() - started)
        await responder.finish()
        stored = responder.stored_response()
        if stored is None or control.no_store or self.disconnected:
            return False
        vary = vary_names(stored.headers)
        if vary is None:
            # Vary: * - the answer may depend on anything: never stored (RFC 9111 4.1).
            return False
        if not await validated(mw.validate_response, stored, self.log_fields()):
            return False
        # Stored under the Vary names its own response gave; lookups learn them here.
        mw.learn_vary(self.key.target, vary)
        key = await self.key.for_vary(vary)
        return mw.stores.start(key, encode_record(stored), self.log_fields(), lease)
