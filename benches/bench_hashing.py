"""HashingEmbedder cost per text (the demo / test embedder; no model, no I/O)."""

from __future__ import annotations

import math

from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache import HashingEmbedder

SHORT = "What is the capital of France?"
LONG = " ".join(["Summarise the following support ticket for the on-call engineer."] * 30)


def test_hashing_short_prompt(benchmark: BenchmarkFixture) -> None:
    embedder = HashingEmbedder()
    vector = benchmark(embedder.embed_one, SHORT)
    assert len(vector) == 256
    assert abs(math.fsum(x * x for x in vector) - 1.0) < 1e-9


def test_hashing_long_prompt(benchmark: BenchmarkFixture) -> None:
    embedder = HashingEmbedder()
    vector = benchmark(embedder.embed_one, LONG)
    assert len(vector) == 256
    assert abs(math.fsum(x * x for x in vector) - 1.0) < 1e-9
