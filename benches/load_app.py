"""The app ``benches/load_middleware.py`` serves under uvicorn: a chat-completions route
answering a fixed completion, behind ``SemanticCacheMiddleware`` when ``LOAD_PG_URI``
is set, bare otherwise (the baseline). ``LOAD_EMBEDDER``: ``hashing`` (deterministic,
microseconds) or ``local`` (the default local model); ``LOAD_THRESHOLD``: the cache's
threshold; ``LOAD_EMBEDDING_MEMO``: its embedding memo size (unset: the default);
``LOAD_TRACE_SAMPLE``: when set, the share of traces sampled (``1``: all, else
``ParentBased(TraceIdRatioBased(share))``) by the OpenTelemetry SDK's provider, which
hands the spans to a ``BatchSpanProcessor`` and an exporter that drops them (the cache
traces with ``SEMANTIC_CACHE_TRACING=on``; FastAPI's own spans are off either way)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from semanticcache import BaseEmbedder, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._options import EMBEDDING_MEMO

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


def make_embedder(name: str) -> BaseEmbedder:
    """The benchmark's embedder by name: ``hashing`` or ``local``."""
    if name == "local":
        from semanticcache import LocalEmbedder

        return LocalEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r}")


def make_cache(uri: str, embedder: BaseEmbedder | None = None) -> SemanticCache:
    """The cache the benchmark serves (and seeds): the environment's embedder (unless
    one is given), threshold and memo size."""
    memo = os.environ.get("LOAD_EMBEDDING_MEMO")
    return SemanticCache(
        pg_uri=uri,
        embedder=embedder or make_embedder(os.environ.get("LOAD_EMBEDDER", "hashing")),
        threshold=float(os.environ.get("LOAD_THRESHOLD", "0.9")),
        embedding_memo_size=int(memo) if memo else EMBEDDING_MEMO,
    )


def _trace(share: float) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    class Dropped(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = ALWAYS_ON if share >= 1 else ParentBased(TraceIdRatioBased(share))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)


if os.environ.get("LOAD_TRACE_SAMPLE"):
    _trace(float(os.environ["LOAD_TRACE_SAMPLE"]))
_uri = os.environ.get("LOAD_PG_URI")
_cache = make_cache(_uri) if _uri else None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if _cache is not None:
        await _cache.open()
    yield
    if _cache is not None:
        await _cache.close()


# The cache's spans only (FastAPI records its own once a tracer provider is set).
app = FastAPI(lifespan=_lifespan, telemetry={"tracing": False})
if _cache is not None:
    # The load test seeds entries keyed by path and query (it knows no host name).
    app.add_middleware(SemanticCacheMiddleware, cache=_cache, route_key="path_query")


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    return ANSWER
