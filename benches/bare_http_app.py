"""The hand-written floor of a semantic hit over HTTP, for ``benches/load_middleware.py
--scenarios bare-http``: the same FastAPI route and uvicorn stack as ``load_app.py``,
answering each request with the bare pgvector top-1 query, written as a user would
write it (a psycopg pool, a prepared statement), no cache.

The question's vector is looked up in a dictionary filled at start-up (what the cache's
embedding memo does for a question asked before), from ``LOAD_BARE_VECTORS`` (``.npy``)
and ``LOAD_BARE_TEXTS`` (a JSON list of the questions, in the same order); the table is
``LOAD_BARE_TABLE`` in ``LOAD_PG_URI``, with the cache's session settings."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool

from semanticcache._storage.plan import connection_options

_texts: list[str] = json.loads(Path(os.environ["LOAD_BARE_TEXTS"]).read_text())
_vectors: dict[str, str] = {
    text: "[" + ",".join(repr(float(x)) for x in vector) + "]"
    for text, vector in zip(_texts, np.load(os.environ["LOAD_BARE_VECTORS"]), strict=True)
}
_query = (
    f"SELECT id, response FROM {os.environ['LOAD_BARE_TABLE']} "
    "ORDER BY embedding <=> %s::vector LIMIT 1"
)
_pool = AsyncConnectionPool(
    os.environ["LOAD_PG_URI"],
    min_size=1,
    max_size=10,
    open=False,
    kwargs={"autocommit": True, "options": connection_options(None)},
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await _pool.open()
    yield
    await _pool.close()


app = FastAPI(lifespan=_lifespan, telemetry={"tracing": False})


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body: dict[str, Any] = await request.json()
    vector = _vectors[body["messages"][-1]["content"]]
    async with _pool.connection() as conn:
        cursor = await conn.execute(_query, (vector,), prepare=True)
        row = await cursor.fetchone()
    assert row is not None
    return Response(content=row[1], media_type="application/json")
