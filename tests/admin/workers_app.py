"""The app the admin test runs in two uvicorn processes: the middleware in front of a
chat route, the admin endpoint mounted at /admin, every response stamped with the pid of
the worker that answered (outside the cache, so hits carry it too). Settings come from
the environment; once the file ``ADMIN_TEST_NO_STORE`` names exists, the chat route
forbids storing its answers, so that a later hit can only be an old entry."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semanticcache import (
    CacheSettings,
    HashingEmbedder,
    SemanticCache,
    SemanticCacheMiddleware,
    admin_app,
)

_cache = SemanticCache(settings=CacheSettings.from_env(), embedder=HashingEmbedder())
_NO_STORE = Path(os.environ["ADMIN_TEST_NO_STORE"])


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await _cache.open()
    yield
    await _cache.close()


_app = FastAPI(lifespan=_lifespan)
_app.add_middleware(SemanticCacheMiddleware, cache=_cache)
_app.mount("/admin", admin_app(_cache))


@_app.post("/v1/chat/completions")
def chat(body: dict[str, Any]) -> JSONResponse:
    headers = {"cache-control": "no-store"} if _NO_STORE.exists() else {}
    return JSONResponse({"answer": "Lyon", "n": len(body)}, headers=headers)


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
