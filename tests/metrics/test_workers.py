"""Prometheus metrics through ``uvicorn --workers 2`` in multiprocess mode: known traffic,
then one scrape finds the exact counts of both workers together."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semanticcache import HashingEmbedder, SemanticCache
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
# Prompts of one partition: three misses, then exact and semantic hits on them.
FRANCE = "What is the capital of France?"
JUPITER = "How many moons does Jupiter have?"
CHESS = "Explain the rules of chess in one sentence"
REWORDED = "what is the capital of France, please"


@pytest.fixture
def workers(pg_uri: str, tmp_path: Path) -> Iterator[str]:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(ROOT)]),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "SEMANTIC_CACHE_PG_URI": pg_uri,
        "SEMANTIC_CACHE_METRICS": "1",
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        # Both workers name an entry by the same token.
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": secrets.token_hex(16),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.metrics.workers_app:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "uvicorn exited"
            try:
                httpx.get(url + "/metrics/", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rows(pg_uri: str, table: str) -> int:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if found is None or not found[0]:
            return 0
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return 0 if row is None else int(row[0])


def _wait_rows(pg_uri: str, table: str, count: int) -> None:
    # Stores run after the response: the next request must find the entry.
    deadline = time.monotonic() + 30
    while _rows(pg_uri, table) < count:
        assert time.monotonic() < deadline, f"entry {count} never stored"
        time.sleep(0.05)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_two_workers_report_the_exact_counts(workers: str, pg_uri: str) -> None:
    table = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder()).table
    model = f"m-{secrets.token_hex(4)}"
    entries: dict[str, set[str]] = {}

    def post(text: str, **headers: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        # Fresh connections: both workers take requests.
        got = httpx.post(workers + CHAT, json=body, headers=headers, timeout=30)
        assert got.status_code == 200
        return got

    for stored, text in enumerate((FRANCE, JUPITER, CHESS), start=1):
        miss = post(text)
        assert miss.headers["x-cache"] == "MISS"
        assert "x-cache-entry" not in miss.headers
        _wait_rows(pg_uri, table, stored)
    for text, match in (
        (JUPITER, "exact"),
        (JUPITER, "exact"),
        (REWORDED, "semantic"),
        (REWORDED, "semantic"),
    ):
        hit = post(text)
        assert hit.headers["x-cache"] == "HIT"
        assert hit.headers["x-cache-match"] == match
        entries.setdefault(text, set()).add(hit.headers["x-cache-entry"])
    bypass = post(FRANCE, authorization="Bearer t")
    assert bypass.headers["x-cache"] == "BYPASS"

    # One token per entry, whichever worker served it; two entries, two tokens.
    assert [len(tokens) for tokens in entries.values()] == [1, 1]
    assert entries[JUPITER] != entries[REWORDED]

    scrape = httpx.get(workers + "/metrics", follow_redirects=True, timeout=10)
    assert scrape.status_code == 200
    samples = _samples(scrape.text)
    route = {"route": CHAT}
    for outcome, count in (("miss", 3), ("exact_hit", 2), ("semantic_hit", 2)):
        assert _value(samples, "semcache_lookups_total", outcome=outcome, **route) == count, outcome
    assert _value(samples, "semcache_lookup_seconds_count", **route) == 7
    assert _value(samples, "semcache_bypasses_total", reason="authorization", **route) == 1
    assert _value(samples, "semcache_upstream_calls_total", **route) == 3
    assert _value(samples, "semcache_upstream_seconds_count", **route) == 3
    assert _value(samples, "semcache_store_seconds_count", **route) == 3
    # The first miss found an empty partition: no nearest entry to measure.
    assert _value(samples, "semcache_nearest_similarity_count", outcome="miss") == 2
    assert _value(samples, "semcache_nearest_similarity_count", outcome="hit") == 2
    # Semantic hits are at 0.9 or more; misses of other questions below.
    assert _value(samples, "semcache_nearest_similarity_bucket", outcome="hit", le="0.88") == 0
    assert _value(samples, "semcache_breaker_state", dependency="postgres") == 0
    assert _value(samples, "semcache_upstream_seconds_saved_total", **route) >= 0
