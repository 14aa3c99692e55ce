"""LocalEmbedder (all-MiniLM-L6-v2 int8, ONNX Runtime): short-query latency, batch throughput.

Run with ``pytest benches/bench_embed_local.py --benchmark-enable``. Throughput in texts
per second is ``texts / mean``: each round of the batch benches embeds ``BATCH`` texts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache._embedders.local import DIMENSION, LocalEmbedder

SHORT = "What is the capital of France?"
BATCH = 64
QUESTIONS = [
    f"How do I configure the cache for endpoint number {i} with a {i % 7}-day TTL?"
    for i in range(BATCH)
]


@pytest.fixture(scope="module", params=[None, 1], ids=["threads=auto", "threads=1"])
def embedder(request: pytest.FixtureRequest) -> Iterator[LocalEmbedder]:
    local = LocalEmbedder(threads=request.param)
    yield local
    local.close()


def _check(vectors: list[list[float]], count: int) -> None:
    assert len(vectors) == count
    assert all(len(v) == DIMENSION for v in vectors)
    assert abs(math.fsum(x * x for x in vectors[0]) - 1.0) < 1e-5


@pytest.mark.benchmark(group="embed-local-short")
def test_local_short_query_sync(benchmark: BenchmarkFixture, embedder: LocalEmbedder) -> None:
    _check(benchmark(embedder.embed_sync, [SHORT]), 1)


@pytest.mark.benchmark(group="embed-local-short")
def test_local_short_query_async(benchmark: BenchmarkFixture, embedder: LocalEmbedder) -> None:
    # Includes the hop to the worker thread and back to the event loop.
    loop = asyncio.new_event_loop()
    try:
        vectors = benchmark(lambda: loop.run_until_complete(embedder.embed([SHORT])))
    finally:
        loop.close()
    _check(vectors, 1)


@pytest.mark.benchmark(group="embed-local-batch")
def test_local_batch(benchmark: BenchmarkFixture, embedder: LocalEmbedder) -> None:
    _check(benchmark(embedder.embed_sync, QUESTIONS), BATCH)


@pytest.mark.benchmark(group="embed-local-batch")
def test_local_concurrent_single_queries(
    benchmark: BenchmarkFixture, embedder: LocalEmbedder
) -> None:
    # BATCH concurrent one-text calls, as BATCH concurrent requests would make them.
    async def burst() -> list[list[float]]:
        results = await asyncio.gather(*(embedder.embed([q]) for q in QUESTIONS))
        return [vectors[0] for vectors in results]

    loop = asyncio.new_event_loop()
    try:
        vectors = benchmark(lambda: loop.run_until_complete(burst()))
    finally:
        loop.close()
    _check(vectors, BATCH)
