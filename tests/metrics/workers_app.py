"""The app the metrics tests run under ``uvicorn --workers 2``: the middleware in front of
a chat route, metrics on (from the environment) and mounted at /metrics."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from semanticcache import (
    CacheSettings,
    HashingEmbedder,
    SemanticCache,
    SemanticCacheMiddleware,
    metrics_app,
)

_cache = SemanticCache(settings=CacheSettings.from_env(), embedder=HashingEmbedder())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await _cache.close()


app = FastAPI(lifespan=_lifespan)
app.add_middleware(SemanticCacheMiddleware, cache=_cache)
app.mount("/metrics", metrics_app())


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    return {"object": "chat.completion", "answer": f"from {os.getpid()}", "n": len(body)}
