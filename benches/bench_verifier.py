"""What stage 2 costs: ``SemanticCache.lookup`` of a paraphrase with the verifier and
without it, side by side, on the same table (local embedder, real Postgres).

The demo's question groups are the data: the first question of each group is stored, the
others are looked up (each lookup a semantic candidate). Both caches run with a threshold
that serves every candidate (similarity 0.5 without the verifier; probability 1e-6 with
it), so every timed lookup is a semantic hit and the difference is the model's run. The
embeddings of the looked-up texts are remembered after the first round in both caches,
so the embedder's cost is left out of both alike. Also: an exact hit and a miss with no
candidate above the floor, with the verifier on (neither runs the model).

    .venv/bin/python -m pytest benches/bench_verifier.py --benchmark-enable \\
        --benchmark-columns=median,iqr,ops
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache import SemanticCache
from semanticcache._cli.demo.questions import load_groups
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings

PARTITION = secrets.token_bytes(16)
UNRELATED = "Quelle est la recette traditionnelle du cassoulet de Castelnaudary ?"


@pytest.fixture(scope="module")
def setup(pg_uri: str) -> Iterator[tuple[asyncio.AbstractEventLoop, dict[str, SemanticCache]]]:
    loop = asyncio.new_event_loop()
    embedder = LocalEmbedder()
    groups = load_groups()
    caches = {
        "off": SemanticCache(
            embedder=embedder, settings=CacheSettings(pg_uri=pg_uri, verifier="off", threshold=0.5)
        ),
        "on": SemanticCache(
            embedder=embedder,
            settings=CacheSettings(pg_uri=pg_uri, verifier_threshold=1e-6, verifier_floor=0.5),
        ),
    }

    async def fill() -> None:
        for group in groups:
            await caches["off"].put(
                group.questions[0], group.answer.encode(), partition=PARTITION, raise_errors=True
            )

    loop.run_until_complete(fill())
    yield loop, caches
    for cache in caches.values():
        loop.run_until_complete(cache.close())
    embedder.close()
    loop.close()


def _paraphrases() -> list[str]:
    return [q for g in load_groups() for q in g.questions[1:]]


def _run(
    benchmark: BenchmarkFixture,
    setup: tuple[asyncio.AbstractEventLoop, dict[str, SemanticCache]],
    mode: str,
    texts: list[str],
    expect: str,
) -> None:
    loop, caches = setup
    cache = caches[mode]
    cycle = itertools.cycle(texts)
    for text in texts:  # remember every embedding first
        loop.run_until_complete(cache.lookup(text, partition=PARTITION))

    def lookup() -> str:
        result = loop.run_until_complete(cache.lookup(next(cycle), partition=PARTITION))
        return result.hit.match if result.hit is not None else result.reason

    assert benchmark(lookup) == expect


@pytest.mark.benchmark(group="semantic hit")
@pytest.mark.parametrize("mode", ["off", "on"])
def test_semantic_hit(
    benchmark: BenchmarkFixture,
    setup: tuple[asyncio.AbstractEventLoop, dict[str, SemanticCache]],
    mode: str,
) -> None:
    # Paraphrases whose nearest stored question is above 0.5 in both caches.
    texts = [t for t in _paraphrases() if len(t) < 120]
    loop, caches = setup
    hits = [
        t
        for t in texts
        if loop.run_until_complete(caches["off"].lookup(t, partition=PARTITION)).hit is not None
    ]
    _run(benchmark, setup, mode, hits, "semantic")


@pytest.mark.benchmark(group="verifier on: no model run")
def test_exact_hit(
    benchmark: BenchmarkFixture,
    setup: tuple[asyncio.AbstractEventLoop, dict[str, SemanticCache]],
) -> None:
    stored = [g.questions[0] for g in load_groups()]
    _run(benchmark, setup, "on", stored, "exact")


@pytest.mark.benchmark(group="verifier on: no model run")
def test_miss_below_the_floor(
    benchmark: BenchmarkFixture,
    setup: tuple[asyncio.AbstractEventLoop, dict[str, SemanticCache]],
) -> None:
    _run(benchmark, setup, "on", [UNRELATED], "miss")
