"""``semcache calibrate`` with the verifier on: its probability threshold for the target,
checked by judging the same pairs again at that threshold with ``judge_pairs``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from semanticcache import HashingEmbedder
from semanticcache._cli.calibrate import verifier_threshold
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings
from semanticcache.calibration import judge_pairs
from tests.cli.helpers import semcache
from tests.verifier.test_sentence_transformers import tiny_model  # noqa: F401  (a fixture)

# (a, b, same answer): paraphrases, near misses and unrelated questions, written for this test.
PAIRS = [
    ("How do I reset my router?", "How can I reset my wifi router?", True),
    ("What is the capital of France?", "What's the capital city of France?", True),
    ("What is the best way to learn Python?", "How should I learn Python?", True),
    ("How can I lose weight fast?", "What is the fastest way to lose weight?", True),
    ("Why is the sky blue?", "What makes the sky look blue?", True),
    ("How do I change a flat tire?", "How do you change a flat tyre?", True),
    ("Is coffee bad for your heart?", "Does coffee harm the heart?", True),
    ("What is the tallest mountain in the world?", "Which mountain is the highest on earth?", True),
    ("How do I bake bread at home?", "What is a good recipe for homemade bread?", True),
    ("How do I make cold brew coffee?", "What's the way to make cold brew coffee?", True),
    ("What are the side effects of ibuprofen?", "What are the side effects of aspirin?", False),
    ("How do I learn to play guitar?", "How do I learn to play piano?", False),
    ("What is machine learning?", "What is deep learning?", False),
    ("How do I boil an egg?", "How long should I boil an egg?", False),
    ("What is the best laptop for students?", "What is the best tablet for students?", False),
    ("How do I train a puppy?", "How do I train a kitten?", False),
    ("What should I see in Rome?", "What should I see in Florence?", False),
    ("How do I grow tomatoes?", "How do I grow potatoes?", False),
    ("How do I bake bread at home?", "How do I fix a flat tyre?", False),
    ("Who wrote Hamlet?", "Who painted the Mona Lisa?", False),
]
TARGET = 0.1  # one of the ten different-answer pairs may be served
# Low enough that several different-answer pairs reach the verifier: its threshold, not
# the floor, must then keep them out.
FLOOR = 0.5


def _write(path: Path, pairs: list[tuple[str, str, bool]]) -> None:
    with path.open("w") as f:
        for a, b, same in pairs:
            f.write(json.dumps({"a": a, "b": b, "same_answer": same}) + "\n")


def _line(pattern: str, out: str) -> str:
    found = re.search(pattern, out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


def _rates(served: list[bool], pairs: list[tuple[str, str, bool]]) -> tuple[float, float]:
    """(hit rate on same-answer pairs, false-hit rate on the others)."""
    positives = [s for s, (_, _, same) in zip(served, pairs, strict=True) if same]
    negatives = [s for s, (_, _, same) in zip(served, pairs, strict=True) if not same]
    return sum(positives) / len(positives), sum(negatives) / len(negatives)


def _served(
    settings: CacheSettings, embedder: BaseEmbedder, pairs: list[tuple[str, str, bool]]
) -> list[bool]:
    judged = asyncio.run(
        judge_pairs([(a, b) for a, b, _ in pairs], settings=settings, embedder=embedder)
    )
    return [j.served for j in judged]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


def test_the_printed_verifier_threshold_holds_the_target_on_the_pairs(
    pg_uri: str, tmp_path: Path, local: LocalEmbedder
) -> None:
    path = tmp_path / "pairs.jsonl"
    _write(path, PAIRS)
    # The local embedder turns the verifier on (auto): the packaged model is calibrated.
    done = semcache(
        "calibrate", "--pairs", str(path), "--embedder", "local", "--target-fhr", str(TARGET),
        "--pg-uri", pg_uri, env={"SEMANTIC_CACHE_VERIFIER_FLOOR": str(FLOOR)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    printed = _line(r"^SEMANTIC_CACHE_VERIFIER_THRESHOLD=(\d\.\d{4})$", out)
    threshold = float(printed)
    assert threshold > 0.0001, out  # a threshold that refuses pairs, not the smallest one
    # The similarity-only threshold is beside it, not as a line to set.
    assert re.search(r"^SEMANTIC_CACHE_THRESHOLD=", out, re.MULTILINE) is None, out
    similarity = float(
        _line(
            r"^\(with SEMANTIC_CACHE_VERIFIER=off instead: SEMANTIC_CACHE_THRESHOLD=(\d\.\d{3})\)$",
            out,
        )
    )
    assert "verifying 20 pairs: 20/20 (100 %)" in done.stderr

    # Judged again, independently of the command: at the printed threshold the verifier
    # serves at most the target's share of the different-answer pairs...
    at = CacheSettings(verifier_threshold=threshold, verifier_floor=FLOOR)
    served = _served(at, local, PAIRS)
    hit_rate, false_hit_rate = _rates(served, PAIRS)
    assert false_hit_rate <= TARGET
    assert hit_rate > 0.0
    figures = re.search(
        r"^  hit rate +[\d.]+ % +([\d.]+) %.*\n  false-hit rate +[\d.]+ % +([\d.]+) %",
        out,
        re.MULTILINE,
    )
    assert figures is not None, out
    assert float(figures.group(1)) == pytest.approx(100 * hit_rate, abs=0.05)
    assert float(figures.group(2)) == pytest.approx(100 * false_hit_rate, abs=0.005)
    # ... and it is the lowest such threshold on the printed grid: one step lower serves more.
    lower = CacheSettings(verifier_threshold=round(threshold - 0.0001, 4), verifier_floor=FLOOR)
    assert _rates(_served(lower, local, PAIRS), PAIRS)[1] > TARGET

    # The similarity-only figure is today's decision (verifier off) at its threshold.
    off = CacheSettings(verifier="off", threshold=similarity)
    assert _rates(_served(off, local, PAIRS), PAIRS)[1] <= TARGET


def test_a_named_model_without_a_threshold_is_calibrated(
    pg_uri: str,
    tmp_path: Path,
    tiny_model: str,  # noqa: F811  (the imported fixture)
) -> None:
    path = tmp_path / "pairs.jsonl"
    _write(path, PAIRS)
    # The cache refuses a named model without SEMANTIC_CACHE_VERIFIER_THRESHOLD; calibrate
    # is how one gets it.
    env = {"SEMANTIC_CACHE_VERIFIER_MODEL": tiny_model, "SEMANTIC_CACHE_VERIFIER_FLOOR": "0.05"}
    done = semcache(
        "calibrate", "--pairs", str(path), "--embedder", "hashing", "--target-fhr", "0.2",
        "--pg-uri", pg_uri, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"verifier {tiny_model}:" in done.stdout
    threshold = float(_line(r"^SEMANTIC_CACHE_VERIFIER_THRESHOLD=(\d\.\d{4})$", done.stdout))
    at = CacheSettings(verifier_model=tiny_model, verifier_threshold=threshold, verifier_floor=0.05)
    assert _rates(_served(at, HashingEmbedder(), PAIRS), PAIRS)[1] <= 0.2


def test_without_the_verifier_only_the_similarity_threshold_is_printed(
    pg_uri: str, tmp_path: Path
) -> None:
    path = tmp_path / "pairs.jsonl"
    _write(path, PAIRS)
    done = semcache(
        "calibrate", "--pairs", str(path), "--embedder", "hashing", "--pg-uri", pg_uri,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^SEMANTIC_CACHE_THRESHOLD=\d\.\d{3}$", done.stdout, re.MULTILINE)
    assert "VERIFIER" not in done.stdout
    assert "verifying" not in done.stderr


def test_the_threshold_is_just_above_the_last_refused_different_answer_pair() -> None:
    labels = [True, True, False, False, False, False]
    # Ten per cent of four negatives is none: the threshold must clear the highest, 0.8.
    assert verifier_threshold([0.9, 0.5, 0.8, 0.7, None, 0.1], labels, 0.1) == 0.8001
    # A quarter is one: the second highest, 0.7, must be refused.
    assert verifier_threshold([0.9, 0.5, 0.8, 0.7, None, 0.1], labels, 0.25) == 0.7001
    # Within a printed step: the next printed value above it.
    assert verifier_threshold([0.9, 0.5, 0.81234, 0.0, 0.0, 0.0], labels, 0.0) == 0.8124
    # Pairs that never reached the verifier (None) are never served: all allowed.
    assert verifier_threshold([0.9, 0.5, None, None, None, None], labels, 0.0) == 0.0001
    assert verifier_threshold([0.9, 0.5, 0.3, None, None, None], labels, 0.25) == 0.0001
    # A different-answer pair at 1.0 cannot be refused by any threshold.
    assert verifier_threshold([0.9, 0.5, 1.0, None, None, None], labels, 0.0) is None
