"""Shared set-up of the proxy tests: a real upstream (aiohttp.web on loopback) speaking
the OpenAI chat-completions wire format plus test routes, and the proxy app under a real
uvicorn (lifespan on) in the test's event loop."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from fastapi import FastAPI

from semanticcache import HashingEmbedder, SemanticCache, create_semantic_cache_proxy_app
from tests.servers import serve_asgi

CHAT = "/v1/chat/completions"
PATTERN = hashlib.sha256(b"proxy-test").digest() * 4096  # 128 KiB of fixed bytes


def completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


def sse_events(content: str, model: str) -> list[bytes]:
    head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in re.findall(r"\S+\s*", content)]
    events = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def stream_of(size: int) -> list[bytes]:
    """``size`` bytes of the fixed pattern, in pattern-sized pieces."""
    pieces = [PATTERN] * (size // len(PATTERN))
    if size % len(PATTERN):
        pieces.append(PATTERN[: size % len(PATTERN)])
    return pieces


@dataclass
class Upstream:
    """A loopback upstream; what it saw is kept for the tests to check."""

    url: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    headers: list[list[tuple[str, str]]] = field(default_factory=list)
    raw_paths: list[str] = field(default_factory=list)
    # /upload: set once the first body bytes arrived; the digest and size at the end.
    upload_started: asyncio.Event = field(default_factory=asyncio.Event)
    upload_digest: str = ""
    upload_size: int = 0
    # /download: the test sets it once it has read the first bytes.
    download_seen: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when a handler was cancelled (aiohttp cancels it when its client goes away).
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    gzip_body: bytes = b""
    # Set at each request's arrival.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, name: str) -> list[str]:
        """The values of header ``name`` in the last request."""
        return [v for n, v in self.headers[-1] if n.lower() == name]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls[path] += 1
        self.headers.append(list(request.headers.items()))
        self.raw_paths.append(request.raw_path)
        self.arrived.set()
        try:
            return await self._route(request, path)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def _route(self, request: web.Request, path: str) -> web.StreamResponse:
        if path == CHAT or path == "/v1/gzip" + CHAT:
            return await self._chat(request, gzipped=path != CHAT)
        if path == "/v1/cookies" + CHAT:
            body = await request.json()
            response = web.json_response(completion("with cookies", body["model"]))
            response.headers.add("Set-Cookie", "a=1; Path=/")
            response.headers.add("Set-Cookie", "b=2; Path=/")
            return response
        if path == "/v1/zstd" + CHAT:
            # An encoding the forwarder cannot undo, on bytes that would otherwise be
            # storable (a JSON object): passed through, and never stored.
            body = await request.json()
            return web.Response(
                body=json.dumps(completion("zstd", body["model"])).encode(),
                headers={"Content-Encoding": "zstd", "Content-Type": "application/json"},
            )
        if path == "/cookies":
            response = web.Response(text="ok")
            response.headers.add("Set-Cookie", "session=one; Path=/; HttpOnly")
            response.headers.add("Set-Cookie", "theme=dark; Path=/")
            return response
        if path == "/gzip":
            self.gzip_body = gzip.compress(b'{"hello": "world"}' * 100)
            return web.Response(
                body=self.gzip_body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        if path == "/hop":
            response = web.Response(text="hop")
            response.headers["Connection"] = "x-secret-hop"
            response.headers["X-Secret-Hop"] = "1"
            response.headers["Proxy-Authenticate"] = "Basic"
            response.headers["X-End"] = "kept"
            return response
        if path == "/upload":
            return await self._upload(request)
        if path == "/download":
            return await self._download(request)
        if path == "/slow":
            await asyncio.sleep(30)
            return web.Response(text="late")
        if path == "/forever" or path == "/v1/forever" + CHAT:
            await request.read()
            return await self._forever(request)
        if path == "/cut":
            # A chunked body cut after 10 bytes by a closed connection: a broken
            # upstream (chunked, so only the missing last chunk tells it is cut).
            await request.read()
            cut = web.StreamResponse()
            cut.enable_chunked_encoding()
            cut.content_type = "application/json"
            await cut.prepare(request)
            await cut.write(b'{"n": 1234')
            assert request.transport is not None
            request.transport.close()
            return cut
        await request.read()
        return web.json_response({"path": path, "method": request.method})

    async def _chat(self, request: web.Request, *, gzipped: bool) -> web.StreamResponse:
        body = await request.json()
        n = self.calls[request.path]
        content = f"answer number {n}"
        if not body.get("stream"):
            payload = json.dumps(completion(content, body["model"])).encode()
            if not gzipped:
                return web.Response(body=payload, content_type="application/json")
            # Compressed whatever the client asked for (some servers do).
            return web.Response(
                body=gzip.compress(payload),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in sse_events(content, body["model"]):
            await response.write(event)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            if not self.upload_started.is_set():
                self.upload_started.set()
            digest.update(chunk)
            size += len(chunk)
        self.upload_digest = digest.hexdigest()
        self.upload_size = size
        return web.json_response({"sha256": self.upload_digest, "size": size})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "0"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        pieces = stream_of(size)
        half = len(pieces) // 2
        for i, piece in enumerate(pieces):
            if i == half:
                # The second half only once the client has bytes: a proxy that held the
                # whole body before sending would never get here (the test times out).
                await asyncio.wait_for(self.download_seen.wait(), 60)
            await response.write(piece)
        await response.write_eof()
        return response

    async def _forever(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = "m"
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model}
        while True:
            event = {**head, "choices": [{"index": 0, "delta": {"content": "x "}}]}
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def run_upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    # handler_cancellation: a handler whose client went away is cancelled, which is
    # how the tests observe that the proxy closed the upstream connection.
    runner = web.AppRunner(upstream.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        await runner.cleanup()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with run_upstream() as up:
        yield up


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    c = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=0.9)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def model() -> str:
    """A model name of its own for each test: its own partitions in the shared table."""
    return f"m-{secrets.token_hex(4)}"


@pytest.fixture
def proxy(upstream: Upstream, cache: SemanticCache) -> FastAPI:
    return create_semantic_cache_proxy_app(upstream.url, cache)


def serve(app: Any) -> AbstractAsyncContextManager[str]:
    """``app`` under a real uvicorn (lifespan on) on a free 127.0.0.1 port, in this
    event loop; yields the base URL. Shut down (lifespan too) on exit."""
    return serve_asgi(
        app,
        lifespan="on",
        # The upstream's Server and Date headers go through; no second pair of ours.
        server_header=False,
        date_header=False,
        # The proxy appends the peer's address to X-Forwarded-For itself: uvicorn must
        # not replace the peer by the client-sent value first.
        proxy_headers=False,
    )


def chat_body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
