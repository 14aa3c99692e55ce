"""The verifier's answer-quality benchmark (benches/quality/verifier.py): its metrics, its
message when the data is absent, and a sample of the test split checked against
``judge_pairs`` run at each ``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE``.

The full run is ``python -m benches.quality.verifier --split DIR``; see
docs/BENCHMARKS.md. The tests that read the pairs are skipped, saying where to get them
and how to make the split, when they are absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from benches.quality.run import DEFAULT_DATA
from benches.quality.verifier import (
    AUDIT,
    DEFAULT_PAWS,
    DEFAULT_SPLIT,
    RATES,
    AtRate,
    Ceilings,
    Decision,
    Judged,
    Rates,
    Remembered,
    audit,
    ceilings,
    load_splits,
    lowest_threshold,
    main,
    markdown,
    measure,
    missing_inputs,
    rates_of,
    similarity_served,
    split_files,
    verifier_served,
)
from semanticcache import HashingEmbedder
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier.card import Thresholds, load_card
from semanticcache.calibration import Pair, judge_pairs

SAMPLE = 40

problems = missing_inputs(DEFAULT_DATA, DEFAULT_PAWS, DEFAULT_SPLIT)
needs_data = pytest.mark.skipif(bool(problems), reason=" / ".join(problems))


def test_the_lowest_threshold_refuses_what_the_rate_does_not_allow() -> None:
    scores = [0.99, 0.98, 0.97, 0.95, 0.90, 0.80]
    labels = [True, False, False, True, False, False]
    passes = [True] * 6
    # Four negatives, none allowed at 10 %: just above the highest, 0.98.
    t = lowest_threshold(scores, passes, labels, 0.1)
    assert 0.98 < t < 0.98 + 1e-12
    # A quarter allows one: just above the second, 0.97.
    assert 0.97 < lowest_threshold(scores, passes, labels, 0.25) < 0.98
    # A negative the agreement check refused never counts.
    refused = [True, False, True, True, True, True]
    assert 0.97 < lowest_threshold(scores, refused, labels, 0.1) < 0.98
    assert lowest_threshold(scores, passes, labels, 1.0) == 0.0


def test_the_decisions_and_their_rates() -> None:
    judged = Judged(
        pairs=[
            ("flights from paris to rome", "flights from rome to paris"),
            ("how do i reset my router", "router reset steps"),
            ("a", "b"),
            ("what is a cat", "what is a dog"),
        ],
        labels=[True, True, False, False],
        similarity=[0.99, 0.90, 0.98, 0.70],
        agrees=[True, True, False, True],
        probability=[0.95, 0.6, None, 0.7],
    )
    # Similarity only: 0.98 is refused by the check, 0.70 is below the threshold.
    assert similarity_served(judged, 0.85) == [True, True, False, False]
    # The verifier: no probability (it never reached the model) is never served.
    assert verifier_served(judged, 0.65) == [True, False, False, True]
    assert rates_of(verifier_served(judged, 0.65), judged.labels) == Rates(0.5, 0.5)
    # Two thresholds: the first pair shares all its words and takes the stricter one.
    two = Thresholds(0.65, 0.96, 0.75)
    assert verifier_served(judged, two) == [False, False, False, True]
    assert math.isnan(rates_of([True], [True]).false_hits)


def test_the_table_compares_with_todays_decision_held_on_qqp() -> None:
    def decision(threshold: float, recall: float) -> Decision:
        kinds = ("qqp", "qqp_raw", "paws", "rules", "paraphrases")
        return Decision(threshold, {k: Rates(recall, 0.01) for k in kinds})

    row = AtRate(0.01, decision(0.9, 0.45), decision(0.997, 0.01), decision(0.958, 0.15))
    sizes = {"qqp": (100, 40), "qqp_raw": (100, 35), "paws": (50, 20), "rules": (10, 5)}
    bounds = Ceilings(0.77, 138, 5056, {0.01: 0.366})
    text = markdown([row], sizes, "DIR", bounds)
    assert "QQP (audited) 100 (40 same answer), QQP (raw labels) 100 (35 same answer)" in text
    assert "| 1 % | **verifier** (threshold for all) | 0.9000 | 45.0 % (3.0x) |" in text
    assert "| 1 % | similarity only, threshold for QQP | 0.9580 | 15.0 % | 1.00 % |" in text
    assert "lets 77.0 % of the QQP duplicates through" in text
    assert "138 of the 5,056 raw" in text
    assert "1.0 %: 36.6 %" in text


def test_the_ceilings_follow_the_audit_and_the_agreement_check() -> None:
    def judged(labels: list[bool], agrees: list[bool]) -> Judged:
        n = len(labels)
        return Judged([("a", "b")] * n, labels, [0.9] * n, agrees, None)

    raw = [True, True, False, False, False, False, False, False, False, False]
    audited = [True, True, True, False, False, False, False, False, False, False]
    agrees = [True, False, True, True, True, True, True, True, True, True]
    bounds = ceilings({"qqp": judged(audited, agrees), "qqp_raw": judged(raw, agrees)})
    assert bounds.agreement == 2 / 3  # of the three audited duplicates, one is refused
    assert (bounds.relabelled, bounds.raw_negatives) == (1, 8)
    # One relabelled pair among 8 raw negatives: serving it is 12.5 % raw false hits, so
    # at 1 % a perfect judge could serve 8 % of the same-answer pairs.
    assert bounds.perfect_raw_recall == pytest.approx({0.005: 0.04, 0.01: 0.08, 0.02: 0.16})
    nobody = ceilings({"qqp": judged(raw, agrees), "qqp_raw": judged(raw, agrees)})
    assert nobody.relabelled == 0
    assert set(nobody.perfect_raw_recall.values()) == {1.0}


def test_the_audit_counts_pairs_read_as_same_answer() -> None:
    found = json.loads((AUDIT / "qqp.test.json").read_text())
    same = next(k for k, v in found.items() if v)
    other = next(k for k, v in found.items() if not v)
    pairs = [Pair(same, "a", "b", False), Pair(other, "c", "d", False), Pair("x", "e", "f", True)]
    assert [p.same_answer for p in audit(pairs, "test")] == [True, False, True]


@needs_data
def test_the_audit_reads_only_pairs_labelled_different() -> None:
    splits = load_splits(DEFAULT_DATA, DEFAULT_PAWS, DEFAULT_SPLIT)
    for part in ("calibrate", "test"):
        found = json.loads((AUDIT / f"qqp.{part}.json").read_text())
        labels = {p.id: p.same_answer for p in splits["qqp"][part]}
        assert all(labels[k] is False for k in found), part


async def test_remembered_embeds_each_text_once() -> None:
    class Counting(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        async def embed(self, texts: Sequence[str]) -> list[list[float]]:
            self.seen += texts
            return await super().embed(texts)

    inner = Counting()
    embedder = Remembered(inner)
    assert embedder.model_id == inner.model_id
    first = await embedder.embed(["a b", "c d", "a b"])
    assert await embedder.embed(["c d"]) == [first[1]]
    assert inner.seen == ["a b", "c d"]
    embedder.forget()
    await embedder.embed(["a b"])
    assert inner.seen == ["a b", "c d", "a b"]


def test_a_missing_split_says_how_to_make_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"id": "1", "a": "x", "b": "y", "same_answer": true}\n')
    status = main(["--split", str(tmp_path / "nowhere"), "--data", str(data), "--paws", str(data)])
    assert status == 2
    err = capsys.readouterr().err
    assert "python -m training.verifier.split --qqp" in err
    assert "python -m training.verifier.rules --out DIR" in err
    assert str(tmp_path / "nowhere" / "split" / "qqp.test.ids") in err
    assert err.count("error:") == 1


def test_the_split_folder_or_its_split_subfolder() -> None:
    assert split_files(Path("/x/out"))["qqp.test"] == Path("/x/out/split/qqp.test.ids")
    assert split_files(Path("/x/out"))["rules.test"] == Path("/x/out/rules/test.jsonl")


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


@needs_data
async def test_a_sample_of_the_test_split_is_the_lookups_decision_at_each_rate(
    local: LocalEmbedder,
) -> None:
    splits = load_splits(DEFAULT_DATA, DEFAULT_PAWS, DEFAULT_SPLIT, limit=SAMPLE)
    assert {len(parts["test"]) for parts in splits.values()} == {SAMPLE}
    rows, test = await measure(splits, local)
    assert [row.max_false_hit_rate for row in rows] == list(RATES)
    pairs = [(p.a, p.b) for p in splits["qqp"]["test"]]
    judged = test["qqp"]
    for row in rows:
        # The figures' verifier decision is judge_pairs' at that rate's configuration...
        at_rate = await judge_pairs(
            pairs, settings=CacheSettings(max_false_hit_rate=row.max_false_hit_rate), embedder=local
        )
        verifier = row.verifier
        reordered = verifier.reordered if verifier.reordered is not None else verifier.threshold
        thresholds = Thresholds(verifier.threshold, reordered, load_card().reordered_words)
        assert [j.served for j in at_rate] == verifier_served(judged, thresholds)
        assert rates_of([j.served for j in at_rate], judged.labels) == row.verifier.rates["qqp"]
        # ... and today's is judge_pairs' with the verifier off at its threshold.
        off = CacheSettings(verifier="off", threshold=row.similarity_qqp.threshold)
        plain = await judge_pairs(pairs, settings=off, embedder=local)
        assert [j.served for j in plain] == similarity_served(judged, row.similarity_qqp.threshold)
    # The thresholds tighten as the rate falls.
    assert [row.verifier.threshold for row in rows] == sorted(
        (row.verifier.threshold for row in rows), reverse=True
    )
