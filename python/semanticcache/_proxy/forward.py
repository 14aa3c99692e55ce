"""``Forwarder``: a pure ASGI app that sends every request to one upstream over one
``aiohttp.ClientSession`` and streams the answer back.

Bodies are streamed both ways (a bounded queue between the ASGI ``receive()`` and the
upstream request, the upstream's chunks sent on as they arrive), so traffic the cache
does not keep is never held whole. Hop-by-hop headers are removed in both directions,
``X-Forwarded-*`` are added, and the client going away cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from semanticcache._middleware.asgi import STORABLE_EXTENSION
from semanticcache._middleware.headers import HOP_BY_HOP
from semanticcache._proxy.decoding import DecodeChain, content_codings, decodable
from semanticcache._settings import mask_connection_string
from semanticcache.errors import ConfigurationError

if TYPE_CHECKING:
    from semanticcache._tracing import Tracing

__all__ = ["Forwarder"]

_log = logging.getLogger("semanticcache.proxy")

# Hop-by-hop fields (the middleware's list), never forwarded in either direction. Host
# is replaced by the upstream's; Expect was answered by our own server already;
# Content-Length of a response we decode is recomputed (dropped).
_HOP_BY_HOP: Final = frozenset(name.decode("latin-1") for name in HOP_BY_HOP)
_REQUEST_DROPPED: Final = _HOP_BY_HOP | {"host", "expect"}
_FORWARDED: Final = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
# aiohttp adds these when the client did not send them; a proxy must not (an
# Accept-Encoding the client never sent would get it a body it cannot read).
_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# Request chunks waiting for the upstream: a slow upstream stops the reads from the
# client (and so the client's uploads) instead of growing memory.
_QUEUE_CHUNKS: Final = 4
_JSON: Final = b"application/json"
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Fields a ``Connection`` header names: hop-by-hop for this message too."""
    return {
        token.strip().lower()
        for name, value in headers
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }


class _Upstream(Exception):
    """The upstream failed before its response head: answered with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _check_upstream(upstream: str) -> URL:
    # Shown masked, and not chained: the URL may hold a password.
    shown = mask_connection_string(upstream) if isinstance(upstream, str) else upstream
    try:
        url = URL(upstream)
    except (TypeError, ValueError):
        raise ConfigurationError(f"upstream is not a URL: {shown!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"upstream must be an http:// or https:// URL with a host, not {shown!r}"
        )
    if url.query_string or url.fragment or url.user is not None:
        raise ConfigurationError(
            "upstream must not have a query string, a fragment or user info "
            "(send credentials as headers)"
        )
    return url


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError("timeout must be a number of seconds or None")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ConfigurationError(f"timeout must be > 0 seconds, not {timeout!r}")
    return float(timeout)


class Forwarder:
    """Pure ASGI app forwarding every HTTP request to ``upstream``.

    ``upstream`` is a base URL (``http://host:port`` or ``http://host:port/prefix``); the
    request's raw path and query string are appended to it. ``timeout`` (seconds,
    ``None`` for no limit) bounds the connection, the wait for the response head (then
    504) and each wait for the next body chunk (then the response is cut short). Call
    :meth:`start` before the first request and :meth:`close` at shutdown (the proxy
    app's lifespan does both). With ``tracing``, each upstream request carries the
    current trace context (``traceparent``), replacing the client's.
    """

    def __init__(
        self,
        upstream: str,
        *,
        timeout: float | None = None,
        max_connections: int = 100,
        tracing: Tracing | None = None,
    ) -> None:
        self.upstream = _check_upstream(upstream)
        self.timeout = _check_timeout(timeout)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError("max_connections must be an int")
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, not {max_connections}")
        self.max_connections = max_connections
        self._origin = str(self.upstream.origin())
        self._base_path = self.upstream.raw_path.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self.tracing = tracing

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The open client session, ``None`` before :meth:`start` and after :meth:`close`."""
        return self._session

    async def start(self) -> None:
        """Open the client session (idempotent)."""
        if self._session is not None and not self._session.closed:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
            # Bytes pass through as the upstream encoded them; we decode only where the
            # cache may store the response (see _Exchange).
            auto_decompress=False,
            # The session is shared by every client: an upstream's cookies must never be
            # sent back on behalf of someone else.
            cookie_jar=aiohttp.DummyCookieJar(),
            # No HTTP_PROXY / netrc from the environment: the upstream is the only hop.
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the client session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Not proxied: refuse the handshake rather than leave it hanging.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        session = self._session
        if session is None or session.closed:
            await _send_error(send, 503, "proxy not started")
            return
        await _Exchange(self, session, scope, receive, send).run()

    def url_for(self, scope: Scope) -> URL:
        """The upstream URL of a request: base path + raw path + query string.

        Built by concatenation, never by URL joining: a path such as ``//other.host/``
        or ``/../`` stays a path on the upstream.
        """
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(scope["path"], safe=_PATH_SAFE)
        if not path.startswith("/"):
            path = "/" + path
        query = scope.get("query_string", b"").decode("latin-1")
        target = self._origin + self._base_path + path + ("?" + query if query else "")
        return URL(target, encoded=True)


class _Exchange:
    """One request's forwarding: the body pump, the upstream call, the response."""

    def __init__(
        self,
        fwd: Forwarder,
        session: aiohttp.ClientSession,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        self.fwd = fwd
        self.session = session
        self.scope = scope
        self.receive = receive
        self.send = send
        # The middleware marks the requests whose answer it may store: those must come
        # back identity-encoded (stored bytes are replayed without Content-Encoding).
        self.storable = STORABLE_EXTENSION in (scope.get("extensions") or {})
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_CHUNKS)
        self.started = False  # the response head went to the client

    def _request_headers(self) -> tuple[CIMultiDict[str], bool]:
        """Headers for the upstream, and whether the request has a body to stream."""
        pairs = [
            (n.decode("latin-1").lower(), v.decode("latin-1"))
            for n, v in self.scope.get("headers", [])
        ]
        named = _connection_named(pairs)
        has_body = any(
            (n == "content-length" and v.strip() not in ("", "0"))
            or (n == "transfer-encoding" and "chunked" in v.lower())
            for n, v in pairs
        )
        out: CIMultiDict[str] = CIMultiDict()
        forwarded_for: list[str] = []
        host = ""
        for name, value in pairs:
            if name in _REQUEST_DROPPED or name in named or name in _FORWARDED:
                if name == "x-forwarded-for":
                    forwarded_for.append(value)
                elif name == "host":
                    host = value
                continue
            if self.storable and name == "accept-encoding":
                continue
            out.add(name, value)
        if self.storable:
            out["accept-encoding"] = "identity"
        client = self.scope.get("client")
        if client:
            forwarded_for.append(str(client[0]))
        if forwarded_for:
            out["x-forwarded-for"] = ", ".join(forwarded_for)
        out["x-forwarded-proto"] = str(self.scope.get("scheme", "http"))
        if host:
            out["x-forwarded-host"] = host
        if self.fwd.tracing is not None:
            # The upstream's spans join the cache's trace, under its upstream span.
            self.fwd.tracing.inject(out)
        return out, has_body

    async def run(self) -> None:
        headers, has_body = self._request_headers()
        pump = asyncio.create_task(self._pump(has_body))
        work = asyncio.create_task(self._exchange(headers, has_body))
        try:
            done, _ = await asyncio.wait({pump, work}, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()
                return
            # The pump ends only when the client is gone: stop the upstream request
            # (closing its connection) instead of reading an answer nobody will get.
            pump.result()
            _log.debug("proxy: client disconnected, upstream request cancelled")
        finally:
            for task in (pump, work):
                if not task.done():
                    task.cancel()
            for task in (pump, work):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _pump(self, has_body: bool) -> None:
        """Read ``receive()``: the body into the queue, then wait for a disconnect.
        Returns only when the client went away."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._end_body()
                return
            chunk: bytes = message.get("body", b"")
            if chunk and has_body:
                await self.queue.put(chunk)
            if not message.get("more_body", False):
                break
        await self.queue.put(None)
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def _end_body(self) -> None:
        # Wake the body iterator if it waits (it then fails the upload).
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.queue.get()
            if chunk is None:
                return
            yield chunk

    async def _exchange(self, headers: CIMultiDict[str], has_body: bool) -> None:
        try:
            async with self._open(headers, has_body) as response:
                await self._respond(response)
        except _Upstream as exc:
            if not self.started:
                await _send_error(self.send, exc.status, exc.detail)

    @contextlib.asynccontextmanager
    async def _open(
        self, headers: CIMultiDict[str], has_body: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        url = self.fwd.url_for(self.scope)
        method = self.scope["method"]
        try:
            # The head must come within the timeout (sock_read covers the wait too,
            # but not a server that trickles bytes of its head).
            async with asyncio.timeout(self.fwd.timeout):
                response = await self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=self._body() if has_body else None,
                    skip_auto_headers=[h for h in _AUTO_HEADERS if h not in headers],
                    allow_redirects=False,
                )
        except TimeoutError:
            _log.warning("proxy: upstream timed out %s %s", method, url.path)
            raise _Upstream(504, "upstream timed out") from None
        except aiohttp.ClientConnectorError as exc:
            _log.warning("proxy: cannot connect to the upstream: %s", exc)
            raise _Upstream(502, "bad gateway: could not connect to the upstream") from None
        except aiohttp.ClientError as exc:
            _log.warning("proxy: upstream request failed: %s", type(exc).__name__)
            raise _Upstream(
                502, f"bad gateway: upstream request failed ({type(exc).__name__})"
            ) from None
        finished = False
        try:
            yield response
            finished = True
        finally:
            if finished:
                response.release()
            else:
                # Not read to its end (cancelled, failed): close the connection, so the
                # upstream sees the request abandoned and the pool never reuses it.
                response.close()

    async def _respond(self, response: aiohttp.ClientResponse) -> None:
        pairs = [
            (n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in response.raw_headers
        ]
        named = _connection_named(pairs)
        codings = content_codings(pairs)
        # Asked for identity and got it compressed anyway: decode, so what the middleware
        # stores (and the client gets) carries no Content-Encoding. No codings: no decoding.
        decode = self.storable and decodable(codings)
        decoder = DecodeChain(codings if decode else [])
        dropped = _HOP_BY_HOP | named
        if decode:
            dropped = dropped | {"content-encoding", "content-length"}
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs if n not in dropped]
        await self.send(
            {"type": "http.response.start", "status": response.status, "headers": headers}
        )
        self.started = True
        try:
            async for chunk in response.content.iter_any():
                for piece in decoder.decode(chunk):
                    await self.send(
                        {"type": "http.response.body", "body": piece, "more_body": True}
                    )
            for piece in decoder.flush():
                await self.send({"type": "http.response.body", "body": piece, "more_body": True})
        except (TimeoutError, aiohttp.ClientError, zlib.error) as exc:
            # Head sent already: no status to change. End without completing the
            # response, so the server aborts it and the client sees a cut body (a
            # "complete" short body would be taken for the whole answer).
            _log.warning("proxy: upstream body failed: %s", type(exc).__name__)
            response.close()
            return
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_error(send: Send, status: int, detail: str) -> None:

    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
