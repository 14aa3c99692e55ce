"""A sentence-transformers cross-encoder named in the settings replaces the packaged model:
a tiny one is built here (random weights, the packaged vocabulary), never downloaded."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from semanticcache import HashingEmbedder, SemanticCache
from semanticcache._embedders.local import VOCAB_PATH
from semanticcache._settings import CacheSettings
from semanticcache.calibration import judge_pairs
from semanticcache.errors import ConfigurationError

PAIR = ("How do I reset my router?", "How can I reset my router?")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import importlib

    import torch

    # Typed loosely: transformers' lazy module hides these names from mypy.
    transformers: Any = importlib.import_module("transformers")

    torch.manual_seed(15)
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(VOCAB_PATH), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


async def test_a_named_cross_encoder_decides_with_the_users_threshold(
    pg_uri: str, tiny_model: str
) -> None:
    from sentence_transformers import CrossEncoder

    expected = float(CrossEncoder(tiny_model, device="cpu").predict([PAIR])[0])
    assert 0.0 < expected < 1.0
    embedder = HashingEmbedder()
    for threshold, reason in ((min(1.0, expected + 0.01), "unverified"), (expected - 0.01, "hit")):
        config = CacheSettings(
            pg_uri=pg_uri,
            verifier_model=tiny_model,
            verifier_threshold=threshold,
            verifier_floor=0.1,
        )
        (judgement,) = await judge_pairs([PAIR], settings=config, embedder=embedder)
        assert judgement.probability == pytest.approx(expected, abs=1e-5)
        assert judgement.reason == reason
        async with SemanticCache(embedder=embedder, settings=config) as cache:
            assert cache.verifier is not None
            assert cache.verifier.name == tiny_model
            partition = secrets.token_bytes(8)
            await cache.put(PAIR[0], b"steps", partition=partition, raise_errors=True)
            result = await cache.lookup(PAIR[1], partition=partition)
            assert result.reason == reason
            assert result.probability == pytest.approx(expected, abs=1e-5)


def test_a_model_that_cannot_load_is_a_start_up_error(pg_uri: str, tmp_path: Path) -> None:
    config = CacheSettings(
        pg_uri=pg_uri, verifier_model=str(tmp_path / "missing"), verifier_threshold=0.5
    )
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        SemanticCache(embedder=HashingEmbedder(), settings=config)
