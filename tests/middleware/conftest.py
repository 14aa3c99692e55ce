"""Shared set-up of the middleware tests: a cache on the module's Postgres, a counting app."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from tests.servers import serve_asgi


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=0.9) as c:
        yield c


@pytest.fixture
def model() -> str:
    """A model name of its own for each test: its own partitions in the shared table."""
    return f"m-{secrets.token_hex(4)}"


@dataclass
class Calls:
    """What the app saw."""

    count: int = 0
    bodies: list[bytes] = field(default_factory=list)


def completion(content: str, model: str = "gpt-test", cid: str = "chatcmpl-1") -> dict[str, Any]:
    return {
        "id": cid,
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


def make_app(calls: Calls) -> FastAPI:
    """Routes whose answers say how often the app was called."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        calls.count += 1
        calls.bodies.append(body)
        return JSONResponse(
            completion(f"answer {calls.count}"),
            headers={"x-app": "yes", "connection": "keep-alive, x-hop", "x-hop": "1"},
        )

    @app.post("/raw")
    async def raw(request: Request) -> Response:
        # The test chooses the response: status, body and headers from query parameters.
        body = await request.body()
        calls.count += 1
        calls.bodies.append(body)
        status = int(request.query_params.get("status", "200"))
        content = request.query_params.get("body", f'{{"n": {calls.count}}}')
        headers = {}
        for name in ("set-cookie", "cache-control"):
            if name in request.query_params:
                headers[name] = request.query_params[name]
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    @app.get("/v1/chat/completions")
    async def chat_get() -> dict[str, int]:
        calls.count += 1
        return {"n": calls.count}

    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def chat_body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def mw(cache: SemanticCache, calls: Calls) -> SemanticCacheMiddleware:
    return SemanticCacheMiddleware(make_app(calls), cache=cache)


def sse_chunks(content: str, cid: str = "chatcmpl-s", model: str = "gpt-test") -> list[bytes]:
    """An OpenAI-style chat-completion stream for ``content``, one event per chunk."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in re.findall(r"\S+\s*", content)]
    events = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    out = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    out.append(b"data: [DONE]\n\n")
    return out


def serve(app: Any) -> AbstractAsyncContextManager[str]:
    """``app`` under a real uvicorn on a free 127.0.0.1 port (lifespan off); yields the
    base URL."""
    return serve_asgi(app)


URL = "/v1/chat/completions"


@dataclass
class Stream:
    """Controls of the streaming app."""

    end: str = "done"
    gate: asyncio.Event | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


def chat_app(calls: Calls, stream: Stream) -> FastAPI:
    app = FastAPI()

    @app.post(URL)
    async def chat(request: Request) -> Response:
        body = await request.json()
        calls.count += 1
        content = f"answer number {calls.count}"
        if not body.get("stream"):
            return JSONResponse(completion(content))
        chunks = sse_chunks(content)
        if stream.end == "truncated":
            chunks = chunks[:-2]
        elif stream.end == "error":
            chunks = [*chunks[:2], b'data: {"error": {"message": "overloaded"}}\n\n']

        async def events() -> AsyncIterator[bytes]:
            try:
                for i, chunk in enumerate(chunks):
                    yield chunk
                    if i == 1 and stream.gate is not None:
                        await stream.gate.wait()
            finally:
                stream.finished.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
