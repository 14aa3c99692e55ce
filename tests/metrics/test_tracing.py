"""OpenTelemetry spans through a real FastAPI app and the middleware over the test
Postgres, recorded by the SDK's in-memory exporter: one request span with embed, search,
upstream, store and replay children, the caller's trace context joined, digests and
figures in the attributes and never the prompt or a header's value; and with tracing
off, no span and no import of opentelemetry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.util.types import Attributes
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.routing import Route

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._middleware.keying import log_digest
from tests.metrics.spans import named, of_trace, recording, started
from tests.middleware.conftest import chat_body, client_for

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/v1/chat/{flavour}"
PROMPT = "which zebraquokka lives on mount kilimanjaro"
REWORDED = "which zebraquokka lives on mount kilimanjaro, please"
SECRET = "s3cr3t-header-value"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
UNSAMPLED = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-00"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recording() as recorded:
        yield recorded


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, tracing=True)
    async with SemanticCache(settings=settings, embedder=HashingEmbedder()) as c:
        yield c


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return "t-" + name[:40]


def _app(cache: SemanticCache) -> tuple[FastAPI, SemanticCacheMiddleware]:
    """The app (the middleware added as an app adds it, so the route template is known)
    and its middleware instance (to drain the stores)."""
    app = FastAPI()
    app.add_middleware(SemanticCacheMiddleware, cache=cache)

    @app.post(ROUTE)
    async def chat(flavour: str, request: Request) -> Response:
        return JSONResponse({"flavour": flavour, "n": len(await request.body())})

    app.middleware_stack = app.build_middleware_stack()
    layer: object = app.middleware_stack
    while not isinstance(layer, SemanticCacheMiddleware):
        layer = getattr(layer, "app")  # noqa: B009 - each layer wraps the next
    return app, layer


def _outermost(cache: SemanticCache) -> SemanticCacheMiddleware:
    """The middleware as the outermost ASGI app: no instrumentation before it (FastAPI's
    own spans start inside it)."""
    inner = FastAPI()

    @inner.post(ROUTE)
    async def chat(flavour: str) -> dict[str, str]:
        return {"flavour": flavour}

    return SemanticCacheMiddleware(inner, cache=cache)


def _ours(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """The cache's spans (FastAPI records its own too, once a provider is set)."""
    return [s for s in spans.get_finished_spans() if s.name.startswith("semcache.")]


def _requests(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return named(_ours(spans), "semcache.request")


def _trace_of(spans: InMemorySpanExporter, request: ReadableSpan) -> list[ReadableSpan]:
    assert request.context is not None
    return of_trace(tuple(_ours(spans)), request.context.trace_id)


def _trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return sorted(
        s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    )


async def _miss_then_stored(
    app: tuple[FastAPI, SemanticCacheMiddleware],
    model: str,
    headers: dict[str, str] | None = None,
) -> None:
    asgi, mw = app
    async with client_for(asgi) as client:
        got = await client.post("/v1/chat/plain", json=chat_body(model, PROMPT), headers=headers)
    assert got.headers["x-cache"] == "MISS"
    await mw.drain()


async def test_a_miss_records_request_embed_search_upstream_store(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    await _miss_then_stored(_app(cache), model)
    (request,) = _requests(spans)
    recorded = _trace_of(spans, request)
    # Every span of the request is a direct child of its request span, the store too
    # (it runs after the response, in a task started under the request's context).
    assert _children(recorded, request) == [
        "semcache.embed",
        "semcache.search",
        "semcache.store",
        "semcache.upstream",
    ]
    assert len(recorded) == 5
    # FastAPI's own server span is current when the middleware runs: it is the parent.
    everything = of_trace(spans.get_finished_spans(), _trace_id(request))
    (server,) = [s for s in everything if s.kind is trace.SpanKind.SERVER]
    assert server.name == f"POST {ROUTE}"
    assert request.parent is not None
    assert request.parent.span_id == _id(server)
    assert request.kind is trace.SpanKind.INTERNAL
    attributes = dict(request.attributes or {})
    key = cache.settings.effective_log_digest_key
    assert attributes == {
        "http.request.method": "POST",
        "http.route": ROUTE,
        "semcache.outcome": "MISS",
        "semcache.reason": "miss",
        "semcache.single_flight": "leader",
        "semcache.scope": "-",
        "semcache.text": log_digest(key, PROMPT),
    }
    (search,) = named(recorded, "semcache.search")
    assert search.attributes is not None
    assert search.attributes["semcache.search.kind"] == "exact_and_similarity"
    (store,) = named(recorded, "semcache.store")
    assert store.attributes is not None
    assert store.attributes["semcache.stored"] is True
    (embed,) = named(recorded, "semcache.embed")
    assert embed.attributes == {"semcache.embedder.model": cache.embedder.model_id}
    # The upstream call ended before the store began: the store is off the response path.
    (upstream,) = named(recorded, "semcache.upstream")
    assert upstream.end_time is not None
    assert store.start_time is not None
    assert upstream.end_time <= store.start_time
    # The app's own spans (FastAPI's endpoint span) nest under the upstream span.
    (endpoint,) = named(everything, "fastapi.endpoint")
    assert endpoint.parent is not None
    assert endpoint.parent.span_id == _id(upstream)


async def test_hits_record_search_and_replay_and_no_upstream(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    app = _app(cache)
    asgi, _ = app
    await _miss_then_stored(app, model)
    spans.clear()
    async with client_for(asgi) as client:
        semantic = await client.post("/v1/chat/plain", json=chat_body(model, REWORDED))
        exact = await client.post("/v1/chat/plain", json=chat_body(model, PROMPT))
    assert semantic.headers["x-cache"] == "HIT"
    assert semantic.headers["x-cache-match"] == "semantic"
    assert exact.headers["x-cache-match"] == "exact"
    first, second = sorted(_requests(spans), key=lambda s: s.start_time or 0)
    semantic_spans = _trace_of(spans, first)
    # The reworded text is embedded; the exact one was embedded by the miss (remembered).
    assert _children(semantic_spans, first) == [
        "semcache.embed",
        "semcache.replay",
        "semcache.search",
    ]
    assert _children(_trace_of(spans, second), second) == ["semcache.replay", "semcache.search"]
    (replay,) = named(semantic_spans, "semcache.replay")
    assert dict(replay.attributes or {}) == {
        "semcache.served": True,
        "semcache.entry": semantic.headers["x-cache-entry"],
    }
    request = dict(first.attributes or {})
    assert request["semcache.outcome"] == "HIT"
    assert request["semcache.reason"] == "hit"
    assert request["semcache.match"] == "semantic"
    assert f"{request['semcache.similarity']:.4f}" == semantic.headers["x-cache-similarity"]
    (search,) = named(semantic_spans, "semcache.search")
    assert dict(search.attributes or {}) == {
        "semcache.search.kind": "exact_and_similarity",
        "semcache.candidates": 1,
        "semcache.nearest_similarity": request["semcache.similarity"],
    }
    assert dict(second.attributes or {})["semcache.match"] == "exact"


async def test_the_middleware_joins_the_trace_its_traceparent_names(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    mw = _outermost(cache)
    async with client_for(mw) as client:
        got = await client.post(
            "/v1/chat/plain", json=chat_body(model, PROMPT), headers={"traceparent": TRACEPARENT}
        )
        assert got.headers["x-cache"] == "MISS"
        await mw.drain()
    (request,) = _requests(spans)
    assert _trace_id(request) == TRACE_ID
    assert request.parent is not None
    assert request.parent.span_id == PARENT_ID
    assert request.parent.is_remote
    assert request.kind is trace.SpanKind.SERVER
    # Every span of the request, the store's included, is in the caller's trace.
    assert len(_trace_of(spans, request)) == len(_ours(spans)) == 5


async def test_through_fastapi_the_spans_join_the_callers_trace(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    app = _app(cache)
    await _miss_then_stored(app, model, headers={"traceparent": TRACEPARENT})
    (request,) = _requests(spans)
    assert _trace_id(request) == TRACE_ID
    assert len(_trace_of(spans, request)) == len(_ours(spans)) == 5


async def _miss_store_hit(mw: SemanticCacheMiddleware, model: str, headers: dict[str, str]) -> None:
    async with client_for(mw) as client:
        miss = await client.post("/v1/chat/plain", json=chat_body(model, PROMPT), headers=headers)
        await mw.drain()
        hit = await client.post("/v1/chat/plain", json=chat_body(model, REWORDED), headers=headers)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")


@pytest.mark.parametrize("unsampled_by", ["sampler", "traceparent"])
async def test_a_request_not_sampled_starts_no_span_but_its_own(
    cache: SemanticCache, model: str, unsampled_by: str
) -> None:
    # The sampler drops every span: only the request span is started (the SDK asks the
    # sampler once per span started, recorded or not), carrying the trace context. Or
    # the caller's traceparent says "not sampled", which the parent-based sampler
    # follows: that is known before any span is started, and none is.
    mw = _outermost(cache)
    by_sampler = unsampled_by == "sampler"
    headers = {"traceparent": TRACEPARENT if by_sampler else UNSAMPLED}
    model = f"{model}-{unsampled_by}"
    with recording(sampled=not by_sampler) as spans:
        await _miss_store_hit(mw, model, headers)
        assert started() == ({"semcache.request": 2} if by_sampler else {})
        assert _ours(spans) == []
    # The next request (in the same task: httpx calls the app in it) is sampled again.
    with recording() as spans:
        async with client_for(mw) as client:
            got = await client.post("/v1/chat/plain", json=chat_body(model, PROMPT))
        assert got.headers["x-cache"] == "HIT"
        assert started() == {"semcache.request": 1, "semcache.search": 1, "semcache.replay": 1}
        assert len(_ours(spans)) == 3


def _reporting_context(cache: SemanticCache) -> SemanticCacheMiddleware:
    """The middleware, outermost, over a Starlette app (no spans of its own) answering
    the trace context current in it: what the app's spans and client calls join."""

    async def chat(request: StarletteRequest) -> JSONResponse:
        context = trace.get_current_span().get_span_context()
        ids = {"trace": context.trace_id, "span": context.span_id}
        return JSONResponse({**ids, "sampled": context.trace_flags.sampled})

    inner = Starlette(routes=[Route("/v1/chat/{flavour}", chat, methods=["POST"])])
    return SemanticCacheMiddleware(inner, cache=cache)


@pytest.mark.parametrize("unsampled_by", ["sampler", "traceparent"])
async def test_a_request_not_sampled_keeps_the_trace_context_current(
    cache: SemanticCache, model: str, unsampled_by: str
) -> None:
    mw = _reporting_context(cache)
    by_sampler = unsampled_by == "sampler"
    headers = {"traceparent": TRACEPARENT if by_sampler else UNSAMPLED}
    with recording(sampled=not by_sampler):
        async with client_for(mw) as client:
            got = await client.post(
                "/v1/chat/plain", json=chat_body(f"{model}-{unsampled_by}", PROMPT), headers=headers
            )
            await mw.drain()
    assert got.headers["x-cache"] == "MISS"
    seen = got.json()
    # The caller's trace, not sampled, under the cache's unrecorded request span when
    # the sampler was asked, else under the caller's span itself (no span was started).
    assert (seen["trace"], seen["sampled"]) == (TRACE_ID, False)
    assert (seen["span"] != PARENT_ID) if by_sampler else (seen["span"] == PARENT_ID)


class _RecordOnly(Sampler):
    """Spans recorded but not sampled (not exported, their children not sampled)."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY, attributes, trace_state)

    def get_description(self) -> str:
        return "record only"


async def test_under_an_outer_span_recorded_but_not_sampled_the_cache_adds_nothing(
    cache: SemanticCache, model: str
) -> None:
    # The outer span records (its provider's sampler said RECORD_ONLY) but is not
    # sampled: the cache's spans would not be either; none is started, and the outer
    # span (not the cache's) gets none of the cache's attributes.
    mw = _outermost(cache)
    outer_tracer = TracerProvider(sampler=_RecordOnly()).get_tracer("tests")
    with recording() as spans, outer_tracer.start_as_current_span("outer") as outer:
        assert outer.is_recording()
        assert not outer.get_span_context().trace_flags.sampled
        await _miss_store_hit(mw, model, {})
        assert started() == {}
        assert _ours(spans) == []
    assert isinstance(outer, ReadableSpan)
    assert dict(outer.attributes or {}) == {}


async def test_a_sampled_request_starts_its_child_spans(cache: SemanticCache, model: str) -> None:
    # The counterpart of the test above: the same requests, sampled.
    mw = _outermost(cache)
    with recording() as spans:
        await _miss_store_hit(mw, model, {"traceparent": TRACEPARENT})
        assert started() == {
            "semcache.request": 2,
            "semcache.embed": 2,  # the miss's (its put reuses the vector) and the hit's
            "semcache.search": 2,
            "semcache.upstream": 1,
            "semcache.store": 1,
            "semcache.replay": 1,
        }
        assert len(_ours(spans)) == 9


async def test_an_outer_span_is_the_parent_when_there_is_one(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    # An outer instrumentation (its span current) has read the caller's context already:
    # the cache's request span is its child, whatever the headers say.
    mw = _outermost(cache)
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("outer") as outer:
        async with client_for(mw) as client:
            await client.post(
                "/v1/chat/plain",
                json=chat_body(model, PROMPT),
                headers={"traceparent": TRACEPARENT},
            )
        await mw.drain()
    (request,) = _requests(spans)
    assert request.parent is not None
    assert request.parent.span_id == outer.get_span_context().span_id
    assert request.kind is trace.SpanKind.INTERNAL


async def test_no_attribute_holds_the_prompt_or_a_header_value(
    cache: SemanticCache, model: str, spans: InMemorySpanExporter
) -> None:
    app = _app(cache)
    asgi, mw = app
    headers = {"x-secret": SECRET, "x-request-id": SECRET, "user-agent": SECRET}
    async with client_for(asgi) as client:
        await client.post("/v1/chat/plain", json=chat_body(model, PROMPT), headers=headers)
        await mw.drain()
        for text in (PROMPT, REWORDED):
            got = await client.post("/v1/chat/plain", json=chat_body(model, text), headers=headers)
            assert got.headers["x-cache"] == "HIT"
        # A bypass (a credential) and a request without a lookup text.
        await client.post(
            "/v1/chat/plain", json=chat_body(model, PROMPT), headers={"authorization": SECRET}
        )
        await client.post("/v1/chat/plain", json={"model": model}, headers=headers)
    recorded = _ours(spans)
    assert len(_requests(spans)) == 5
    words = [*PROMPT.split(), SECRET, model]
    for span in recorded:
        for name, value in (span.attributes or {}).items():
            shown = str(value)
            assert not any(w in shown for w in words if len(w) > 4), (span.name, name, shown)
        for event in span.events:
            assert not any(w in str(event.attributes) for w in words if len(w) > 4)
    in_order = sorted(_requests(spans), key=lambda s: s.start_time or 0)
    bypassed = [dict(s.attributes or {}) for s in in_order][3:]
    assert [b["semcache.outcome"] for b in bypassed] == ["BYPASS", "BYPASS"]
    assert [b["semcache.reason"] for b in bypassed] == ["authorization", "no_query"]


async def test_a_failing_dependency_marks_its_span_with_the_reason_only(
    spans: InMemorySpanExporter,
) -> None:
    settings = CacheSettings(
        pg_uri="postgresql://nobody@127.0.0.1:1/none", tracing=True, breaker_failures=100
    )
    cache = SemanticCache(settings=settings, embedder=HashingEmbedder(), connect_timeout=2)
    try:
        found = await cache.lookup(PROMPT)
        stored = await cache.put(PROMPT, b"answer")
    finally:
        await cache.close()
    assert (found.reason, stored) == ("store_error", None)
    recorded = _ours(spans)
    (search,) = named(recorded, "semcache.search")
    (store,) = named(recorded, "semcache.store")
    for span in (search, store):
        assert span.status.status_code is trace.StatusCode.ERROR
        assert span.status.description == "store_error"
        assert dict(span.attributes or {})["error.type"] == "store_error"
        assert span.events == ()  # no exception event: its message may quote a body
    # Outside the middleware, a lookup's spans are roots of their own traces.
    assert search.parent is None


async def test_tracing_off_records_no_span(
    pg_uri: str, model: str, spans: InMemorySpanExporter
) -> None:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=0.9) as cache:
        assert cache.tracing is None
        app = _app(cache)
        asgi, _ = app
        await _miss_then_stored(app, model, headers={"traceparent": TRACEPARENT})
        async with client_for(asgi) as client:
            hit = await client.post("/v1/chat/plain", json=chat_body(model, REWORDED))
        assert hit.headers["x-cache"] == "HIT"
    await asyncio.sleep(0)
    assert _ours(spans) == []
    # FastAPI recorded its own: the provider was there, the cache's tracing was off.
    assert spans.get_finished_spans()


def test_a_sampler_not_parent_based_decides_under_an_unsampled_parent(pg_uri: str) -> None:
    # ALWAYS_ON records what the caller did not sample: the cache asks it (its own
    # process: a tracer provider is set once per process).
    script = textwrap.dedent(
        f"""
        import asyncio
        import httpx
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from semanticcache import CacheSettings, HashingEmbedder, SemanticCache
        from semanticcache import SemanticCacheMiddleware

        spans = InMemorySpanExporter()
        provider = TracerProvider(sampler=ALWAYS_ON)
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)

        async def chat(request):
            return JSONResponse({{"n": 1}})

        async def main():
            settings = CacheSettings(pg_uri={pg_uri!r}, tracing=True)
            async with SemanticCache(settings=settings, embedder=HashingEmbedder()) as cache:
                app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
                mw = SemanticCacheMiddleware(app, cache=cache)
                transport = httpx.ASGITransport(app=mw)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    body = {{"model": "on", "messages": [{{"role": "user", "content": "q"}}]}}
                    await c.post("/chat", json=body, headers={{"traceparent": {UNSAMPLED!r}}})
                    await mw.drain()
            print(sorted(s.name for s in spans.get_finished_spans()))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "python")},
    )
    assert done.returncode == 0, done.stderr
    recorded = [
        "semcache.embed",
        "semcache.request",
        "semcache.search",
        "semcache.store",
        "semcache.upstream",
    ]
    assert done.stdout.strip() == str(recorded)


@pytest.fixture
def tracing_off_script(pg_uri: str) -> str:
    # A Starlette app: FastAPI itself imports opentelemetry.
    return textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware

        async def chat(request):
            return JSONResponse({{"n": 1}})

        async def main():
            async with SemanticCache(pg_uri={pg_uri!r}, embedder=HashingEmbedder()) as cache:
                app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
                mw = SemanticCacheMiddleware(app, cache=cache)
                transport = httpx.ASGITransport(app=mw)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    body = {{"model": "off-t", "messages": [{{"role": "user", "content": "q"}}]}}
                    await c.post("/chat", json=body, headers={{"traceparent": {TRACEPARENT!r}}})
                    await mw.drain()
                    hit = await c.post("/chat", json=body)
                    assert hit.headers["x-cache"] == "HIT", hit.headers
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        asyncio.run(main())
        """
    )


def test_tracing_off_never_imports_opentelemetry(tracing_off_script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", tracing_off_script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "python")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_without_the_extra_names_the_pip_command(tmp_path: Path) -> None:
    # A module of that name that fails like a missing package would.
    fake = tmp_path / "opentelemetry"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(name='opentelemetry')\n")
    code = (
        "from semanticcache import CacheSettings, HashingEmbedder, SemanticCache\n"
        "settings = CacheSettings(pg_uri='postgresql://u@127.0.0.1:1/d', tracing=True)\n"
        "try:\n    SemanticCache(settings=settings, embedder=HashingEmbedder())\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT / 'python'}"},
    )
    assert "ConfigurationError" in done.stdout, done.stdout + done.stderr
    assert 'pip install "fastapi-semcache[otel]"' in done.stdout
    assert "SEMANTIC_CACHE_TRACING" in done.stdout


def test_the_setting_is_read_from_the_environment() -> None:
    assert CacheSettings.from_env({"SEMANTIC_CACHE_TRACING": "on"}).tracing is True
    assert CacheSettings.from_env({}).tracing is False
