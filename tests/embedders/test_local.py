"""LocalEmbedder: all-MiniLM-L6-v2 int8 on ONNX Runtime, against the fp32 model's vectors."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semanticcache import ConfigurationError, EmbedderError, get_embedder
from semanticcache._embedders.local import (
    DIMENSION,
    MAX_TOKENS,
    MODEL_ID,
    LocalEmbedder,
    build_tokenizer,
)
from semanticcache._settings import CacheSettings

REFERENCE = Path(__file__).parent / "data" / "minilm_fp32_reference.json"


def _cos(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    local = LocalEmbedder()
    yield local
    local.close()


@pytest.fixture(scope="module")
def reference() -> list[tuple[str, list[float]]]:
    records = json.loads(REFERENCE.read_text())["records"]
    return [(r["text"], r["vector"]) for r in records]


async def test_agrees_with_the_fp32_model(
    embedder: LocalEmbedder, reference: list[tuple[str, list[float]]]
) -> None:
    # The reference is the fp32 model run by tests/embedders/minilm_reference.py (numpy,
    # sentence-transformers' own tokenizer.json); int8 weights cost about 0.001 of cosine.
    texts = [text for text, _ in reference]
    vectors = await embedder.embed(texts)
    for (text, expected), got in zip(reference, vectors, strict=True):
        assert _cos(expected, got) > 0.99, text
    mean = math.fsum(_cos(e, g) for (_, e), g in zip(reference, vectors, strict=True))
    assert mean / len(reference) > 0.998


async def test_returns_unit_vectors_in_the_callers_order(embedder: LocalEmbedder) -> None:
    texts = ["a much longer sentence about the weather in Lisbon in May", "short", "", "mid one"]
    together = await embedder.embed(texts)
    assert len(together) == 4
    for text, vector in zip(texts, together, strict=True):
        assert len(vector) == DIMENSION
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0, abs=1e-5)
        # Alone or in a length-sorted batch: the same text, the same vector (int8
        # quantization scales depend on the batch, hence not bit for bit).
        (alone,) = await embedder.embed([text])
        assert _cos(alone, vector) > 0.999
    assert (embedder.model_id, embedder.dimension) == (MODEL_ID, 384)


async def test_batches_larger_than_batch_size_keep_their_order() -> None:
    small = LocalEmbedder(batch_size=2, threads=1)
    try:
        texts = [f"question number {i} " * (i % 4 + 1) for i in range(7)]
        batched = await small.embed(texts)
        for text, vector in zip(texts, batched, strict=True):
            assert _cos(small.embed_sync([text])[0], vector) > 0.999
    finally:
        await small.aclose()


async def test_paraphrases_score_above_unrelated_questions(embedder: LocalEmbedder) -> None:
    base, para, other = await embedder.embed(
        [
            "What is the capital of France?",
            "Which city is France's capital?",
            "How do I bake sourdough bread?",
        ]
    )
    assert _cos(base, para) > 0.85
    assert _cos(base, other) < 0.3


async def test_inference_runs_off_the_event_loop() -> None:
    seen: list[str] = []

    class Recording(LocalEmbedder):
        def _run(self, texts: list[str]) -> list[list[float]]:
            seen.append(threading.current_thread().name)
            return super()._run(texts)

    local = Recording()
    try:
        seen.clear()  # the warm-up ran in the constructor, on this thread
        await local.embed(["one", "two"])
        loop_thread = threading.current_thread().name
        assert seen
        assert all(name != loop_thread for name in seen)
        assert all(name.startswith("semcache-local-embed") for name in seen)
    finally:
        local.close()


async def test_concurrent_calls_all_get_their_own_answer(embedder: LocalEmbedder) -> None:
    texts = [f"topic {i}: {'alpha beta gamma'[: i + 3]}" for i in range(8)]
    results = await asyncio.gather(*(embedder.embed([t]) for t in texts))
    for text, (vector,) in zip(texts, results, strict=True):
        assert _cos(embedder.embed_sync([text])[0], vector) > 0.999


async def test_hostile_text_gives_vectors_not_errors(embedder: LocalEmbedder) -> None:
    texts = [
        "lone \ud800 surrogate",
        "\x00\x01\x7f control",
        "x" * 1_000_000,
        "word " * 100_000,
        "[CLS][SEP][PAD]",
        "\u200b\ufeff",
    ]
    vectors = await embedder.embed(texts)
    assert [len(v) for v in vectors] == [DIMENSION] * len(texts)


def test_long_inputs_are_truncated_to_the_models_window(embedder: LocalEmbedder) -> None:
    tokenizer = build_tokenizer()
    head = "the cache answers questions " * 80  # far more than 256 word pieces
    assert len(tokenizer.encode(head).ids) == MAX_TOKENS
    a, b = embedder.embed_sync([head, head + " and an entirely different ending"])
    assert _cos(a, b) > 0.9999


async def test_an_empty_batch_costs_nothing(embedder: LocalEmbedder) -> None:
    assert await embedder.embed([]) == []


def test_a_non_string_is_a_type_error(embedder: LocalEmbedder) -> None:
    with pytest.raises(TypeError, match="text 1 is bytes"):
        embedder.embed_sync(["ok", b"bytes"])  # type: ignore[list-item]


async def test_a_closed_embedder_refuses_work() -> None:
    local = LocalEmbedder(threads=1)
    await local.aclose()
    local.close()  # idempotent
    with pytest.raises(EmbedderError, match="is closed"):
        await local.embed(["x"])


def test_refuses_a_model_file_that_is_not_the_expected_one(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match=r"is not the all-MiniLM-L6-v2 int8 model"):
        LocalEmbedder(model_path=fake)
    with pytest.raises(ConfigurationError, match="cannot read the model"):
        LocalEmbedder(model_path=tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be in 1..1024"),
        ({"threads": 0}, "threads must be in 1..256"),
    ],
)
def test_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalEmbedder(**kwargs)


def test_the_factory_builds_it_by_default() -> None:
    embedder = get_embedder(CacheSettings())
    try:
        assert isinstance(embedder, LocalEmbedder)
    finally:
        assert isinstance(embedder, LocalEmbedder)
        embedder.close()


def test_importing_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.delitem(sys.modules, "semanticcache._embedders.local")
    with pytest.raises(ConfigurationError, match=r'pip install "fastapi-semcache\[embed-local\]"'):
        importlib.import_module("semanticcache._embedders.local")


async def test_calls_queued_behind_a_busy_worker_run_as_one_batch() -> None:
    runs: list[list[str]] = []
    release = threading.Event()
    started = threading.Event()

    class Gated(LocalEmbedder):
        def _run(self, texts: list[str]) -> list[list[float]]:
            runs.append(texts)
            if texts == ["first"]:
                # Hold the worker, so that the next calls queue up behind this one.
                started.set()
                release.wait(timeout=30)
            return super()._run(texts)

    local = Gated(threads=1)
    try:
        runs.clear()
        first = asyncio.ensure_future(local.embed(["first"]))
        assert await asyncio.to_thread(started.wait, 30)
        later_texts = [[f"queued {i}"] for i in range(7)] + [["two", "texts"]]
        later = [asyncio.ensure_future(local.embed(t)) for t in later_texts]
        await asyncio.sleep(0.01)  # let every call reach the queue
        release.set()
        (first_vector,) = await first
        results = await asyncio.gather(*later)
        # One run for the first call, one for all the calls queued behind it (sorted by
        # length inside the run, so compare as sets).
        assert len(runs) == 2
        assert sorted(runs[1]) == sorted(t for texts in later_texts for t in texts)
        for texts, vectors in zip(later_texts, results, strict=True):
            assert len(vectors) == len(texts)
            for text, vector in zip(texts, vectors, strict=True):
                assert _cos(local.embed_sync([text])[0], vector) > 0.999
        assert _cos(local.embed_sync(["first"])[0], first_vector) > 0.999
    finally:
        release.set()
        local.close()


async def test_a_cancelled_queued_call_is_skipped() -> None:
    runs: list[list[str]] = []
    release = threading.Event()
    started = threading.Event()

    class Gated(LocalEmbedder):
        def _run(self, texts: list[str]) -> list[list[float]]:
            runs.append(texts)
            if texts == ["first"]:
                started.set()
                release.wait(timeout=30)
            return super()._run(texts)

    local = Gated(threads=1)
    try:
        runs.clear()
        first = asyncio.ensure_future(local.embed(["first"]))
        assert await asyncio.to_thread(started.wait, 30)
        doomed = asyncio.ensure_future(local.embed(["cancelled"]))
        kept = asyncio.ensure_future(local.embed(["kept"]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        # The queued call's cancellation reaches the worker's queue a loop turn later;
        # only then may the worker go on (on a loaded machine it could win the race).
        await asyncio.sleep(0.01)
        release.set()
        await first
        assert len(await kept) == 1
        assert runs[1:] == [["kept"]]
    finally:
        release.set()
        local.close()


_BURST = """
import os, resource
from semanticcache._embedders.local import LocalEmbedder

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

embedder = LocalEmbedder(threads=1)
embedder.embed_sync([f"How do I reset router {i}?" for i in range(8)])
before = rss()
# 64 prompts at the model's whole window: the largest batches the embedder runs.
embedder.embed_sync([" ".join(f"word{j} of prompt {i}" for j in range(120)) for i in range(64)])
after = rss()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
embedder.close()
print(before, after, peak)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux's /proc")
def test_a_burst_of_long_prompts_gives_its_memory_back() -> None:
    # In a fresh interpreter, so the peak is the burst's: a long-lived worker must not
    # keep the memory of its largest batch for the rest of its life.
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _BURST], capture_output=True, text=True, check=True, timeout=120
    )
    before, after, peak = map(int, done.stdout.split())
    assert peak - before > 300e6, "the burst should need a few hundred MB while it runs"
    assert after - before < 0.25 * (peak - before), (before, after, peak)
