"""The app's ``send`` on a miss: it buffers (or tees) the response, adds ``X-Cache``, and
keeps what the store policy needs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, Literal

from starlette.types import Message

from semanticcache import _native
from semanticcache._middleware.headers import content_type, is_sse, with_headers
from semanticcache._middleware.record import StoredResponse
from semanticcache._middleware.replay import JSON_TYPE
from semanticcache._middleware.store_policy import storable_response

if TYPE_CHECKING:
    from semanticcache._middleware.flow import Flow

__all__ = ["Responder", "XCache"]

XCache = Literal["HIT", "MISS", "BYPASS", "ERROR"]

_TIMEOUT_BODY: Final = b'{"detail":"upstream timed out"}'


class Responder:
    """The app's send() for one request (see the module doc)."""

    def __init__(self, flow: Flow, outcome: XCache, *, tee: bool) -> None:
        self.flow = flow
        self.outcome = outcome
        self.tee = tee
        self.cap = flow.mw.settings.max_body_bytes
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = False  # the start message went to the client
        self.forwarding = False  # buffering given up: everything goes straight through
        self.complete = False
        self.cacheable = True
        self.tee_buffer: _native.StreamTee | None = None
        self.sse = False
        # (deadline, budget): once the response reaches the client, the upstream
        # budget bounds each pause of the app rather than the whole response, so a
        # long stream that keeps coming is never cut (a stalled one still is).
        self.keep_alive: tuple[asyncio.Timeout, float] | None = None

    async def send(self, message: Message) -> None:
        self._extend()
        await self._handle(message)
        self._extend()

    def _extend(self) -> None:
        if self.started and self.keep_alive is not None:
            deadline, budget = self.keep_alive
            if not deadline.expired():  # past it, the app is being cancelled
                deadline.reschedule(asyncio.get_running_loop().time() + budget)

    async def _handle(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", []))
            self.start = message
            self.sse = is_sse(content_type(headers))
            if self.tee:
                self.tee_buffer = _native.StreamTee(self.cap, sse=self.sse)
                await self._send_start()
            return
        if kind != "http.response.body":
            # Trailers, zero-copy sends, ...: not a response we can replay.
            self.cacheable = False
            await self._go_forwarding()
            await self.flow.send(message)
            return
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more:
            self.complete = True
            self.flow.response_done = True
        if self.tee_buffer is not None:
            self.tee_buffer.push(chunk)
            if not more:
                self.tee_buffer.close()
            await self.flow.send(message)
            return
        if self.forwarding:
            await self.flow.send(message)
            return
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > self.cap:
            # Too big to keep: send what we have and forward the rest as it comes.
            self.cacheable = False
            await self._go_forwarding()
            if not more:
                await self.flow.send(
                    {"type": "http.response.body", "body": b"", "more_body": False}
                )

    async def _send_start(self) -> None:
        if self.start is None or self.started:
            return
        self.started = True
        await self.flow.send(with_headers(self.start, [(b"x-cache", self.outcome.encode())]))

    async def _go_forwarding(self) -> None:
        if self.forwarding:
            return
        self.forwarding = True
        await self._send_start()
        if self.chunks:
            body = b"".join(self.chunks)
            self.chunks = []
            await self.flow.send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self) -> None:
        """The app returned: send what was buffered."""
        if self.tee_buffer is not None or self.forwarding or self.start is None:
            return
        await self._send_start()
        # An app that returned mid-body leaves the response unfinished here too: the
        # server then aborts it, and the client never takes a cut body for the whole.
        await self.flow.send(
            {
                "type": "http.response.body",
                "body": b"".join(self.chunks),
                "more_body": not self.complete,
            }
        )

    async def timed_out(self) -> None:
        self.cacheable = False
        if self.started:
            # Headers (and maybe part of the body) already went out: leave the response
            # unfinished so that the server aborts it; ending it here would pass a cut
            # body off as the whole answer.
            return
        await self.flow.send(
            {
                "type": "http.response.start",
                "status": 504,
                "headers": [
                    (b"content-type", JSON_TYPE),
                    (b"content-length", str(len(_TIMEOUT_BODY)).encode()),
                    (b"x-cache", self.outcome.encode()),
                ],
            }
        )
        await self.flow.send(
            {"type": "http.response.body", "body": _TIMEOUT_BODY, "more_body": False}
        )

    def stored_response(self) -> StoredResponse | None:
        """What to store, or ``None`` when the store policy refuses the response."""
        start = self.start
        if start is None or not self.complete or not self.cacheable:
            return None
        sse_complete: bool | None = None
        if self.tee_buffer is not None:
            if self.tee_buffer.overflowed:
                return None
            body = self.tee_buffer.getvalue()
            sse_complete = self.tee_buffer.complete
        else:
            body = b"".join(self.chunks)
        return storable_response(
            int(start["status"]),
            list(start.get("headers", [])),
            body,
            sse=self.sse,
            sse_complete=sse_complete,
            cap=self.cap,
            credential_headers=self.flow.mw.credential_headers,
        )
