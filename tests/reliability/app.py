"""The app the reliability suite serves under uvicorn workers, behind the middleware.

Every answer names the handler call that made it: a fresh call id, the question, the
tenant and a digest of the credential the handler saw. Each call is also appended to a
per-process JSON-lines log (``RELIABILITY_CALL_LOG`` is its folder), so the load
generator can trace every answer it receives, hit or miss, back to one real call and
check that it was made for the same question, tenant and credential.

The cache reads its settings from ``SEMANTIC_CACHE_*``; the tenant comes from the
``x-tenant`` header, which stands for what an authentication layer would set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware

HANDLER_SECONDS = float(os.environ.get("RELIABILITY_HANDLER_SECONDS", "0.02"))
_LOG_DIR = Path(os.environ.get("RELIABILITY_CALL_LOG", "."))


def credential_digest(authorization: str | None) -> str:
    return hashlib.sha256((authorization or "").encode()).hexdigest()[:16]


def tenant_of(request: Request, body: bytes) -> str | None:
    return request.headers.get("x-tenant")


cache = SemanticCache(embedder=HashingEmbedder())


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    log = (_LOG_DIR / f"calls-{os.getpid()}.jsonl").open("a", buffering=1)
    app.state.log = log
    with contextlib.suppress(Exception):  # a dead store at start-up must not stop the app
        await cache.open()
    try:
        yield
    finally:
        await cache.close()
        log.close()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body: dict[str, Any] = await request.json()
    question = body["messages"][-1]["content"]
    record = {
        "call": uuid.uuid4().hex,
        "q": question,
        "tenant": request.headers.get("x-tenant", ""),
        "cred": credential_digest(request.headers.get("authorization")),
    }
    await asyncio.sleep(HANDLER_SECONDS)
    app.state.log.write(json.dumps(record) + "\n")
    content = json.dumps(record)
    head = {"id": "c-" + record["call"], "model": body.get("model", ""), "created": 1}
    if not body.get("stream"):
        message = {"role": "assistant", "content": content}
        return JSONResponse(
            {**head, "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
        )

    async def events() -> AsyncIterator[bytes]:
        pieces = [content[i : i + 24] for i in range(0, len(content), 24)]
        for piece in pieces:
            chunk = {
                **head,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        end = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield b"data: " + json.dumps(end).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


cached_app = SemanticCacheMiddleware(app, cache=cache, extract_scope=tenant_of)
