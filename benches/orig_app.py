# mypy: ignore-errors
"""The load benchmark's app for the original ``fastapi-semcache`` 0.4.6 (PyPI), run from
its own virtual environment (it installs the same import name ``semanticcache``):

    python -m venv /tmp/orig-venv
    /tmp/orig-venv/bin/pip install fastapi-semcache==0.4.6 uvicorn fastapi
    .venv/bin/python benches/load_middleware.py --original /tmp/orig-venv/bin/python

Same route and answer as ``load_app.py``; the embedder is a port of this project's
``HashingEmbedder`` (same features, weights and hashing), so similarities match.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import secrets
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from semanticcache.embedders._base import BaseEmbedder  # 0.4.6's path: this app runs on it

from semanticcache import SemanticCache, SemanticCacheMiddleware

_WORD = re.compile(r"\w+")


class PortedHashingEmbedder(BaseEmbedder):
    """This project's HashingEmbedder, for the original's embedder interface."""

    @property
    def embedding_dim(self) -> int:
        return 256

    @property
    def cache_namespace(self) -> str:
        return "hashing-v1"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [_embed_one(t) for t in texts]


def _embed_one(text: str) -> list[float]:
    words = _WORD.findall(text.lower())
    features = [(f"w:{w}", 1.0) for w in words]
    features += [(f"b:{a} {b}", 0.7) for a, b in itertools.pairwise(words)]
    joined = f" {' '.join(words)} "
    features += [(f"c:{joined[i : i + 3]}", 0.35) for i in range(len(joined) - 2)]
    vector = [0.0] * 256
    for feature, weight in features:
        value = int.from_bytes(
            hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little"
        )
        vector[value % 256] += (1.0 if value >> 63 else -1.0) * weight
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


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

cache = SemanticCache(
    threshold=0.9, pg_uri=os.environ["LOAD_PG_URI"], embedder=PortedHashingEmbedder()
)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    rows = int(os.environ.get("LOAD_SEED_ROWS", "0"))
    for _ in range(max(0, rows - 1)):
        await cache.put(f"filler question {secrets.token_hex(6)}", ANSWER, "load")
    yield
    await cache.close()


app = FastAPI(lifespan=_lifespan)
app.add_middleware(SemanticCacheMiddleware, cache=cache)


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    return ANSWER
