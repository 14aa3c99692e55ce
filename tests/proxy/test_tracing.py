"""The proxy with ``SEMANTIC_CACHE_TRACING`` on: its upstream requests carry the trace
context (``traceparent`` naming the cache's upstream span), so the origin's spans join
the caller's trace, sampled or not; with it off the client's header passes through
untouched."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import ReadableSpan

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache
from semanticcache._proxy import create_semantic_cache_proxy_app
from tests.metrics.spans import named, of_trace, recording, started
from tests.proxy.conftest import CHAT, Upstream, chat_body, serve

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
UNSAMPLED = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-00"


def _parsed(traceparent: str, flags: str = "01") -> tuple[int, int]:
    version, trace_id, span_id, sent_flags = traceparent.split("-")
    assert (version, sent_flags) == ("00", flags)
    return int(trace_id, 16), int(span_id, 16)


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def test_the_upstream_request_carries_the_cache_upstream_span(
    upstream: Upstream, pg_uri: str, model: str
) -> None:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, tracing=True)
    cache = SemanticCache(settings=settings, embedder=HashingEmbedder())
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    headers = {"traceparent": TRACEPARENT}
    with recording() as spans:
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            question = chat_body(model, "a traced question")
            miss = await http.post(CHAT, json=question, headers=headers)
            assert miss.headers["x-cache"] == "MISS"
            sent = upstream.seen("traceparent")
            await app.state.semantic_cache_middleware.drain()
            hit = await http.post(CHAT, json=question, headers=headers)
            assert hit.headers["x-cache"] == "HIT"
            # Not the cache's (GET): forwarded as is, under the current (FastAPI's) span.
            await http.get("/v1/models", headers=headers)
            passed = upstream.seen("traceparent")
        recorded = of_trace(spans.get_finished_spans(), TRACE_ID)
    assert upstream.calls[CHAT] == 1
    (upstream_span,) = named(recorded, "semcache.upstream")
    # One traceparent, in the caller's trace, naming the cache's upstream span.
    assert len(sent) == 1
    assert _parsed(sent[0]) == (TRACE_ID, _span_id(upstream_span))
    (first, _) = sorted(named(recorded, "semcache.request"), key=lambda s: s.start_time or 0)
    assert upstream_span.parent is not None
    assert upstream_span.parent.span_id == _span_id(first)
    assert len(named(recorded, "semcache.replay")) == 1
    assert len(passed) == 1
    trace_id, parent = _parsed(passed[0])
    assert trace_id == TRACE_ID
    assert parent != PARENT_ID


async def test_a_trace_not_sampled_goes_upstream_without_a_cache_span(
    upstream: Upstream, pg_uri: str, model: str
) -> None:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, tracing=True)
    cache = SemanticCache(settings=settings, embedder=HashingEmbedder())
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    # The spans are not sampled: the caller's traceparent says so (flags 00).
    with recording() as spans:
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            miss = await http.post(
                CHAT, json=chat_body(model, "unsampled"), headers={"traceparent": UNSAMPLED}
            )
            assert miss.headers["x-cache"] == "MISS"
            await app.state.semantic_cache_middleware.drain()
        assert spans.get_finished_spans() == ()
        # FastAPI's server span, current and not sampled, decides: the cache starts no
        # span (no request, upstream or store span).
        assert started() == {}
        # FastAPI's only: the one span started for the request.
        assert sum(started("").values()) == 1
    # The upstream still joins the caller's trace, marked not sampled, under FastAPI's
    # (unrecorded) server span, not the caller's.
    (sent,) = upstream.seen("traceparent")
    trace_id, parent = _parsed(sent, flags="00")
    assert trace_id == TRACE_ID
    assert parent not in (0, PARENT_ID)


async def test_with_tracing_off_the_clients_traceparent_passes_through(
    upstream: Upstream, pg_uri: str, model: str
) -> None:
    cache = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder())
    assert cache.tracing is None
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    assert app.state.proxy_forwarder.tracing is None
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        miss = await http.post(
            CHAT, json=chat_body(model, "untraced"), headers={"traceparent": TRACEPARENT}
        )
    assert miss.headers["x-cache"] == "MISS"
    assert upstream.seen("traceparent") == [TRACEPARENT]
