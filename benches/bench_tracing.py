"""The cost of ``SEMANTIC_CACHE_TRACING``: the middleware's hits with tracing off and on,
side by side, in process (raw ASGI calls, as bench_middleware.py).

Kinds: ``exact`` (an exact repeat), ``semantic`` (a paraphrase asked again: its vector
is remembered), ``semantic_new`` (a paraphrase embedded on each request: no remembered
vectors). All caches share one table (same embedder) and one Postgres; those with
tracing on record into the OpenTelemetry SDK's ``TracerProvider``. A sampled hit makes
three spans (request, search, replay), four when the text is embedded; a hit not
sampled, its request span only (not recorded).

Two ways to run it:

- ``pytest benches/bench_tracing.py --benchmark-enable``: pytest-benchmark, one group
  per kind (``off`` and ``on`` rows run one after the other); spans go through a
  ``SimpleSpanProcessor`` into the ``InMemorySpanExporter`` (the tests' provider).
- ``python -m benches.bench_tracing [--embedder hashing|local] [--sample 0.01]``: off,
  on with every trace sampled (``ALWAYS_ON``) and on with a share of them sampled
  (``ParentBased(TraceIdRatioBased(sample))``, the production setting), and that again
  for requests whose caller's ``traceparent`` says not sampled (``00``), in alternating
  batches (the figures in docs/observability.md), which cancels most of the drift of a
  shared machine; spans go through a ``BatchSpanProcessor`` (as in production) to an
  exporter that drops them. Prints the minimum and median batch mean of each, this
  process's CPU time per hit, and what tracing adds to each.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Tracer
from pytest_benchmark.fixture import BenchmarkFixture
from tests.metrics.spans import exporter, recording

from benches.bench_middleware import PROMPT, REWORDED, app, body, call
from semanticcache import CacheSettings, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._embedders.base import BaseEmbedder

KINDS: Final = ("exact", "semantic", "semantic_new")
# A tracer (None: tracing off) and the requests' headers.
Mode = tuple[Tracer | None, list[tuple[bytes, bytes]]]
MODES: Final = ("off", "on")


@dataclass
class Caches:
    """Two caches with tracing on (one remembering embeddings, one not) and a middleware
    per kind; :meth:`trace` turns their tracing off and on again, so that off and on are
    measured on the same pools, connections and Postgres backends."""

    remembering: SemanticCache
    forgetting: SemanticCache
    middleware: dict[str, SemanticCacheMiddleware]

    def trace(self, on: bool, tracer: Tracer | None = None) -> None:
        """Tracing off or on; ``tracer``: the one to start the spans with (its
        provider's sampler), instead of the global provider's."""
        for cache in (self.remembering, self.forgetting):
            tracing = cache.tracing if on else None
            if tracing is not None and tracer is not None:
                tracing._tracer = tracer
            # The references the request path holds (see SemanticCache.__init__).
            cache._lookups._tracing = tracing
            cache._embeddings._tracing = tracing
            cache._writes._tracing = tracing
        for mw in self.middleware.values():
            mw.tracing = mw.cache.tracing if on else None

    async def open(self) -> None:
        for cache in (self.remembering, self.forgetting):
            await cache.open()
        stored = self.middleware["exact"]
        assert await call(stored, body(PROMPT), []) == b"MISS"
        await stored.drain()

    async def close(self) -> None:
        for cache in (self.remembering, self.forgetting):
            await cache.close()


def make_caches(uri: str, embedder: Callable[[], BaseEmbedder]) -> Caches:
    settings = CacheSettings(pg_uri=uri, threshold=0.9, tracing=True)
    remembering = SemanticCache(settings=settings, embedder=embedder())
    forgetting = SemanticCache(settings=settings, embedder=embedder(), embedding_memo_size=0)
    middleware = {
        "exact": SemanticCacheMiddleware(app, cache=remembering),
        "semantic": SemanticCacheMiddleware(app, cache=remembering),
        "semantic_new": SemanticCacheMiddleware(app, cache=forgetting),
    }
    return Caches(remembering, forgetting, middleware)


def payload(kind: str) -> bytes:
    return body(PROMPT if kind == "exact" else REWORDED)


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    caches: Caches


@pytest.fixture(scope="module")
def setup(pg_server: EmbeddedPostgres) -> Iterator[Setup]:
    name = f"b_tr_{secrets.token_hex(4)}"
    uri = pg_server.create_database(name)
    loop = asyncio.new_event_loop()
    exporter()  # the SDK provider, set once per process
    caches = make_caches(uri, HashingEmbedder)
    try:
        loop.run_until_complete(caches.open())
        yield Setup(loop, caches)
    finally:
        loop.run_until_complete(caches.close())
        loop.close()
        pg_server.drop_database(name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tracing", MODES)
def test_hit(benchmark: BenchmarkFixture, setup: Setup, kind: str, tracing: str) -> None:
    benchmark.group = f"tracing: {kind} hit"
    setup.caches.trace(tracing == "on")
    mw = setup.caches.middleware[kind]
    data = payload(kind)
    with recording() as spans:
        got = benchmark(lambda: setup.loop.run_until_complete(call(mw, data, [])))
        assert got == b"HIT"
        assert bool(spans.get_finished_spans()) == (tracing == "on")


async def interleaved(caches: Caches, tracers: dict[str, Mode], rounds: int, batch: int) -> None:
    """Each kind's hits in batches, the ``tracers``' modes (a tracer, ``None``: tracing
    off; and the requests' headers) in turn; one line per kind and mode, what it adds
    measured against the first mode."""
    print(
        f"{'kind':<14}{'mode':<6}{'wall min':>10}{'wall med':>10}{'added':>9}"
        f"{'cpu min':>10}{'added':>9}{'cpu med':>10}"
    )
    modes = list(tracers)
    for kind in KINDS:
        data = payload(kind)
        means: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        mw = caches.middleware[kind]
        for tracer, headers in tracers.values():  # warm each
            caches.trace(tracer is not None, tracer)
            for _ in range(batch):
                assert await call(mw, data, headers) == b"HIT"
        for _ in range(rounds):
            for mode, (tracer, headers) in tracers.items():
                caches.trace(tracer is not None, tracer)
                started, used = time.perf_counter(), time.process_time()
                for _ in range(batch):
                    await call(mw, data, headers)
                means[mode].append((time.perf_counter() - started) / batch)
                cpu[mode].append((time.process_time() - used) / batch)
        # This process's CPU time (Postgres's is not in it): what tracing itself costs.
        wall_base, cpu_base = min(means[modes[0]]), min(cpu[modes[0]])
        for mode in modes:
            wall, used = min(means[mode]), min(cpu[mode])
            print(
                f"{kind:<14}{mode:<6}{wall * 1e6:>8.1f}us"
                f"{statistics.median(means[mode]) * 1e6:>8.1f}us"
                f"{(wall / wall_base - 1) * 100:>+8.1f}%"
                f"{used * 1e6:>8.1f}us{(used - cpu_base) * 1e6:>+7.1f}us"
                f"{statistics.median(cpu[mode]) * 1e6:>8.1f}us"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", choices=["hashing", "local"], default="hashing")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--sample",
        type=float,
        default=0.01,
        help="the share of traces sampled in the third mode (default 0.01)",
    )
    args = parser.parse_args()
    embedder: Callable[[], BaseEmbedder] = HashingEmbedder
    if args.embedder == "local":
        from semanticcache._embedders.local import LocalEmbedder

        shared = LocalEmbedder()
        embedder = lambda: shared  # noqa: E731 - one model for every cache
    provider = _provider(ALWAYS_ON)
    sampling = _provider(ParentBased(TraceIdRatioBased(args.sample)))
    # The sampler the cache reads to know whether a parent not sampled decides.
    trace.set_tracer_provider(sampling)
    ratio = sampling.get_tracer("semanticcache")
    tracers: dict[str, Mode] = {
        "off": (None, []),
        "on": (provider.get_tracer("semanticcache"), []),
        f"{args.sample:.0%}": (ratio, []),
        # The caller's trace, not sampled: the parent-based sampler follows it.
        "00": (ratio, [(b"traceparent", f"00-{'ab' * 16}-{'cd' * 8}-00".encode())]),
    }
    with tempfile.TemporaryDirectory(prefix="semcache-bench-tracing-") as folder:
        server = EmbeddedPostgres(Path(folder) / "data")
        server.start()
        try:
            uri = server.create_database("bench_tracing")
            caches = make_caches(uri, embedder)

            async def run() -> None:
                await caches.open()
                try:
                    await interleaved(caches, tracers, args.rounds, args.batch)
                finally:
                    await caches.close()

            asyncio.run(run())
        finally:
            server.stop()
            provider.shutdown()
            sampling.shutdown()


def _provider(sampler: Sampler) -> TracerProvider:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    return provider


class _Dropped(SpanExporter):
    """Takes every batch and keeps nothing: the cost of tracing without a collector's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


if __name__ == "__main__":
    main()
