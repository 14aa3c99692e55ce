"""The app the multi-process tests run, one uvicorn process per worker (see
``tests.servers.uvicorn_processes``): the middleware in front of a chat route that
stands for the upstream, the admin endpoint mounted at /admin, every response stamped
with the pid of the worker that answered (outside the cache, so hits carry it too).

Settings come from the environment. The chat route appends ``<pid> <model>`` to the file
``WORKERS_CALLS`` names on every call (the upstream calls of all workers, counted in one
place), answers a body unique to the call, waits ``X-Test-Delay`` seconds first when the
request has that header, and forbids storing its answer when the request has
``X-Test-No-Store`` (so that a later hit can only be an older entry). ``GET /_flush``
writes the worker's pending hit and similarity counts; hit counts are otherwise written
every ``WORKERS_HIT_FLUSH_SECONDS`` (default 1).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semanticcache import (
    CacheSettings,
    HashingEmbedder,
    SemanticCache,
    SemanticCacheMiddleware,
    admin_app,
)

_cache = SemanticCache(
    settings=CacheSettings.from_env(),
    embedder=HashingEmbedder(),
    hit_flush_interval=float(os.environ.get("WORKERS_HIT_FLUSH_SECONDS", "1")),
)
_CALLS = Path(os.environ["WORKERS_CALLS"])


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await _cache.open()
    yield
    await _cache.close()


_app = FastAPI(lifespan=_lifespan)
_app.add_middleware(SemanticCacheMiddleware, cache=_cache)
_app.mount("/admin", admin_app(_cache))


def _record_call(model: str) -> None:
    with _CALLS.open("a") as f:
        f.write(f"{os.getpid()} {model}\n")


@_app.post("/v1/chat/completions")
async def chat(body: dict[str, Any], request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.headers.get("x-test-delay", "0")))
    await asyncio.to_thread(_record_call, str(body.get("model")))
    no_store = "x-test-no-store" in request.headers
    headers = {"cache-control": "no-store"} if no_store else {}
    return JSONResponse({"answer": "Lyon", "call": secrets.token_hex(8)}, headers=headers)


@_app.get("/_flush")
async def flush() -> dict[str, bool]:
    await _cache.flush_hits()
    return {"flushed": True}


class _StampPid:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker-pid", self._pid)]
            await send(message)

        await self._app(scope, receive, stamped)


app = _StampPid(_app)
