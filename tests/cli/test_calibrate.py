"""``semcache calibrate``: labelled pairs through the real cache and Postgres."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import psycopg
import pytest

from semanticcache import HashingEmbedder
from semanticcache._agreement import texts_agree
from semanticcache._cli import main
from semanticcache.calibration import MISS, roc_auc, threshold_for_false_hit_rate
from tests.cli.helpers import semcache

HASHING_TABLE = "semcache_entries_hashing_v1_256"

PAIRS = [
    ("How do I reset my password?", "how do i reset my password please", True),
    ("What is the capital of France?", "what is the capital of france", True),
    ("How do I learn Python quickly?", "How do I learn Python fast?", True),
    ("Best way to boil an egg?", "best way to boil an egg", True),
    ("How far is the Moon?", "How far away is the Moon?", True),
    ("Who wrote Hamlet?", "who wrote hamlet", True),
    ("How do I cancel my order?", "How can I cancel my order?", True),
    ("What is the speed of light?", "What is the speed of sound?", False),
    ("What is the capital of France?", "What is the capital of Germany?", False),
    ("How do I learn Python?", "How do I learn Java?", False),
    ("How do I bake bread?", "How do I fix a flat tyre?", False),
    ("Who wrote Hamlet?", "Who painted the Mona Lisa?", False),
    ("How far is the Moon?", "How far is the Sun?", False),
    ("What is a 404 error?", "What is a 500 error?", False),
]


def _write_pairs(path: Path) -> None:
    with path.open("w") as f:
        for a, b, same in PAIRS:
            f.write(json.dumps({"a": a, "b": b, "same_answer": same}) + "\n")


def _expected(target: float, *, agreement_check: bool = True) -> tuple[float, float]:
    """Threshold and ROC-AUC computed here, independently of the cache: cosines from the
    embedder, and (with the check) a pair the agreement check refuses never hits."""
    embedder = HashingEmbedder()
    scores = []
    for a, b, _ in PAIRS:
        va, vb = embedder.embed_one(a), embedder.embed_one(b)
        scores.append(math.fsum(x * y for x, y in zip(va, vb, strict=True)))
    labels = [same for _, _, same in PAIRS]
    keep = [texts_agree(b, a) if agreement_check else True for a, b, _ in PAIRS]
    best = threshold_for_false_hit_rate(scores, labels, keep, max_rate=target)
    effective = [s if k else MISS for s, k in zip(scores, keep, strict=True)]
    return best.threshold, roc_auc(effective, labels)


def test_calibrate_prints_the_threshold_and_plots(pg_uri: str, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    _write_pairs(pairs)
    png = tmp_path / "rates.png"
    done = semcache(
        "calibrate",
        "--pairs",
        str(pairs),
        "--embedder",
        "hashing",
        "--target-fhr",
        "0",
        "--plot",
        str(png),
        "--pg-uri",
        pg_uri,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    threshold, auc = _expected(0.0)
    line = re.search(r"^SEMANTIC_CACHE_THRESHOLD=(\d\.\d{3})$", out, re.MULTILINE)
    assert line is not None, out
    # pgvector computes the cosine in float32: the grid step may differ by one.
    assert float(line.group(1)) == pytest.approx(threshold, abs=0.0015)
    assert f"threshold for false hits <= 0 %: {line.group(1)}" in out
    assert "false-hit rate:   0.00 % of different-answer pairs" in out
    shown_auc = re.search(r"ROC-AUC: (\d\.\d{3})", out)
    assert shown_auc is not None
    assert float(shown_auc.group(1)) == pytest.approx(auc, abs=0.002)
    assert "pairs: 14 (7 same answer, 7 different)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scoring 14 pairs: 28/28 (100 %)" in done.stderr  # the progress bar's last step
    # The run's entries are gone from the table it used.
    with psycopg.connect(pg_uri) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {HASHING_TABLE} WHERE scope LIKE 'calibrate-%%'"
        ).fetchone()
    assert row == (0,)


def test_calibrate_without_the_agreement_check(pg_uri: str, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    _write_pairs(pairs)
    done = semcache(
        "calibrate",
        "--pairs",
        str(pairs),
        "--embedder",
        "hashing",
        "--target-fhr",
        "0",
        "--pg-uri",
        pg_uri,
        env={"SEMANTIC_CACHE_AGREEMENT_CHECK": "false"},
    )
    assert done.returncode == 0, done.stderr
    threshold, _auc = _expected(0.0, agreement_check=False)
    assert threshold > _expected(0.0)[0]  # the check lets a lower threshold keep 0 %
    line = re.search(r"^SEMANTIC_CACHE_THRESHOLD=(\d\.\d{3})$", done.stdout, re.MULTILINE)
    assert line is not None, done.stdout
    assert float(line.group(1)) == pytest.approx(threshold, abs=0.0015)
    assert "agreement check off" in done.stdout


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    _write_pairs(pairs)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if missing
    status = main(["calibrate", "--pairs", str(pairs), "--plot", str(tmp_path / "x.png")])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert 'pip install "fastapi-semcache[plot]"' in err
