"""The answer-quality benchmark (benches/quality/run.py): its metrics, and a run on the
first pairs of the dev file through the real SemanticCache and Postgres.

The full run (about 41K pairs) is ``python -m benches.quality.run``; see
docs/BENCHMARKS.md for its figures. The tests that read the pairs are skipped, saying
where to get them, when the data is absent (a checkout without ``../shared``).
"""

from __future__ import annotations

import math

import pytest

from benches.quality.run import DEFAULT_DATA, evaluate, markdown, missing_data_message, run
from semanticcache._agreement import texts_agree
from semanticcache._embedders.local import LocalEmbedder
from semanticcache.calibration import (
    MISS,
    Pair,
    load_pairs,
    rates,
    roc_auc,
    threshold_for_false_hit_rate,
)

SAMPLE = 200

needs_data = pytest.mark.skipif(
    not DEFAULT_DATA.is_file(), reason=missing_data_message(DEFAULT_DATA)
)


def test_roc_auc_counts_ordered_pairs_and_half_ties() -> None:
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # One positive (0.5) against negatives 0.5 (tie: half) and 0.1 (win): 1.5 / 2.
    assert roc_auc([0.5, 0.5, 0.1], [True, False, False]) == 0.75
    assert math.isnan(roc_auc([0.5], [True]))


def test_rates_and_the_one_percent_threshold() -> None:
    scores = [0.99, 0.96, 0.90, 0.97, 0.85, 0.80] + [0.50] * 94
    labels = [True, True, True, False, False, False] + [False] * 94
    keep = [True] * 100
    row = rates(scores, labels, 0.95, keep)
    assert (row.hit_rate, row.false_hit_rate, row.precision) == (2 / 3, 1 / 97, 2 / 3)
    # Refusing the 0.97 false hit (the agreement check) makes 0.95 clean.
    gated = rates(scores, labels, 0.95, [True, True, True, False] + [True] * 96)
    assert (gated.false_hit_rate, gated.precision) == (0.0, 1.0)
    best = threshold_for_false_hit_rate(scores, labels, keep, max_rate=0.0)
    assert best.threshold == pytest.approx(0.971)
    assert best.hit_rate == pytest.approx(1 / 3)


@needs_data
def test_the_dev_file_is_where_the_benchmark_looks() -> None:
    pairs = load_pairs(DEFAULT_DATA, limit=3)
    assert len(pairs) == 3
    assert all(isinstance(p.same_answer, bool) for p in pairs)


@needs_data
async def test_quality_sample_through_the_cache(pg_uri: str) -> None:
    pairs = load_pairs(DEFAULT_DATA, limit=SAMPLE)
    results = await run(pg_uri, ["local", "hashing"], pairs, concurrency=16)
    by_name = {r.name: r for r in results}
    local, hashing = by_name["local"], by_name["hashing"]
    # The cache's similarity is the cosine of the embedder's own vectors: every lookup
    # saw its pair's `a` (no partition starved by the index).
    embedder = LocalEmbedder(threads=1)
    try:
        for pair, score in list(zip(pairs, local.scores, strict=True))[:40]:
            va, vb = embedder.embed_sync([pair.a, pair.b])
            cosine = math.fsum(x * y for x, y in zip(va, vb, strict=True))
            assert score == pytest.approx(cosine, abs=1e-3) or (score == MISS and cosine < 0)
    finally:
        embedder.close()
    # all-MiniLM-L6-v2 scores 0.865 on the whole dev file; a semantic model must beat
    # word-overlap hashing on any sizeable sample.
    assert 0.75 < local.auc < 0.97
    assert local.auc > hashing.auc
    assert "| local |" in markdown(results, "sample")
    # The second row set carries the cache's own verdict: the agreement check's.
    checked = by_name["local + agreement check"]
    assert checked.scores == local.scores
    # (A pair with nothing returned, a negative cosine, had no candidate to judge.)
    judged = [i for i, score in enumerate(local.scores) if score != MISS]
    assert [checked.agrees[i] for i in judged] == [
        texts_agree(pairs[i].b, pairs[i].a) for i in judged
    ]
    assert not all(checked.agrees)


def test_evaluate_applies_the_verdicts_as_a_gate() -> None:
    pairs = [
        Pair("1", "lose 5 kg", "lose 10 kg", False),
        Pair("2", "capital of France", "France capital", True),
    ]
    plain = evaluate("x", [0.99, 0.98], pairs, 0.0)
    gated = evaluate("x + agreement check", [0.99, 0.98], pairs, 0.0, [False, True])
    assert plain.at_max_fhr.threshold > 0.98
    assert gated.at_max_fhr.threshold == 0.0
    assert gated.at_max_fhr.hit_rate == 1.0


def test_split_half_picks_the_threshold_on_even_pairs_and_applies_it_to_odd_ones() -> None:
    # Even pairs: a negative at 0.97 and positives at 0.99 / 0.95; odd: a negative at
    # 0.98 that the even half cannot see, and a positive at 0.99.
    pairs = [
        Pair(str(i), "a", "b", label)
        for i, label in enumerate([False, True, True, False, True, True])
    ]
    scores = [0.97, 0.99, 0.99, 0.98, 0.95, 0.50]
    result = evaluate("x", scores, pairs, 0.0)
    assert result.split_even.threshold == pytest.approx(0.971)
    assert result.split_even.hit_rate == 0.5
    assert result.split_odd.false_hit_rate == 1.0  # 0.98 >= 0.971: the held-out surprise
    assert result.split_odd.hit_rate == 0.5
