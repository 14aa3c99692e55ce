"""The app ``benches/load_middleware.py`` serves under uvicorn: a chat-completions route
answering a fixed completion, behind ``SemanticCacheMiddleware`` when ``LOAD_PG_URI``
is set (hashing embedder: deterministic, no model), bare otherwise (the baseline)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware

ANSWER: dict[str, Any] = {
    "id": "chatcmpl-load",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "load",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris is the capital of France."},
            "finish_reason": "stop",
        }
    ],
}

_uri = os.environ.get("LOAD_PG_URI")
_cache = SemanticCache(pg_uri=_uri, embedder=HashingEmbedder(), threshold=0.9) if _uri else None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if _cache is not None:
        await _cache.open()
    yield
    if _cache is not None:
        await _cache.close()


app = FastAPI(lifespan=_lifespan)
if _cache is not None:
    # The load test seeds entries keyed by path and query (it knows no host name).
    app.add_middleware(SemanticCacheMiddleware, cache=_cache, route_key="path_query")


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    return ANSWER
