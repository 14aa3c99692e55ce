"""The app the cross-process single-flight test runs under uvicorn (one process per
server): a slow handler that appends a line to ``SF_COUNT_FILE`` per call."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware

_cache = SemanticCache(embedder=HashingEmbedder(), pg_uri=os.environ["SF_PG_URI"], threshold=0.9)
_count = Path(os.environ["SF_COUNT_FILE"])


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await _cache.close()


app = FastAPI(lifespan=_lifespan)
app.add_middleware(SemanticCacheMiddleware, cache=_cache)


def _record_call() -> None:
    with _count.open("a") as f:
        f.write(f"{os.getpid()}\n")


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    # Slow enough that concurrent identical requests overlap with this one.
    await asyncio.sleep(0.5)
    await asyncio.to_thread(_record_call)
    return {"object": "chat.completion", "answer": f"from {os.getpid()}"}
