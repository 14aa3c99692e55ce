"""``semcache demo``: the stand-in endpoint, the stream, the summary, and full runs as
subprocesses (against the session's Postgres, and once on the embedded defaults)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from semanticcache._cli.demo import (
    Group,
    Outcome,
    Question,
    StandInLLM,
    build_stream,
    load_groups,
    stand_in_latency_ms,
    summary,
)
from tests.cli.helpers import PG_URI_ENV, semcache

LOCAL_TABLE = "semcache_entries_all_minilm_l6_v2_int8_384"
ROW = re.compile(
    r"^\s*(\d+)  (.{50})  (HIT exact|HIT semantic|MISS)\s+(-|\d\.\d{4})\s+(\d+) ms(.*)$"
)


def test_the_sample_has_paraphrase_groups_and_near_misses() -> None:
    groups = load_groups()
    assert 20 <= len(groups) <= 40
    texts = [q for g in groups for q in g.questions]
    assert len(texts) == len(set(texts)), "a question appears twice"
    assert all(2 <= len(g.questions) <= 4 for g in groups)
    ids = {g.id for g in groups}
    near = [g for g in groups if g.near_miss_of is not None]
    assert len(near) >= 8
    assert all(g.near_miss_of in ids for g in near)


def test_the_stream_is_seeded_and_sends_each_question_once_first() -> None:
    groups = load_groups()
    total = sum(len(g.questions) for g in groups)
    stream = build_stream(groups, total, seed=7)
    assert build_stream(groups, total, seed=7) == stream
    assert build_stream(groups, total, seed=8) != stream
    assert sorted(q.text for q in stream) == sorted(q for g in groups for q in g.questions)
    longer = build_stream(groups, total + 5, seed=7)
    assert longer[:total] == stream
    assert {q.text for q in longer[total:]} <= {q.text for q in stream}


async def test_the_stand_in_answers_from_the_question() -> None:
    groups = [Group("g1", "answer one", ("first question?", "1st question?"))]
    llm = StandInLLM(groups, seed=1, latency_ms=(0, 0))
    transport = httpx.ASGITransport(app=llm.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        reply = await client.post(
            "/v1/chat/completions",
            json={"model": "demo-llm", "messages": [{"role": "user", "content": "1st question?"}]},
        )
        other = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "what?"}]}
        )
    body = reply.json()
    assert body["id"] == "chatcmpl-demo-g1"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "answer one"}
    assert other.json()["id"] == "chatcmpl-demo-unknown"
    assert llm.calls == 2


def test_stand_in_latency_is_seeded_and_bounded() -> None:
    values = {stand_in_latency_ms(f"q{i}", 7, (300, 800)) for i in range(50)}
    assert all(300 <= v <= 800 for v in values)
    assert len(values) == 50
    assert stand_in_latency_ms("q1", 7, (300, 800)) == stand_in_latency_ms("q1", 7, (300, 800))
    assert stand_in_latency_ms("q1", 7, (300, 800)) != stand_in_latency_ms("q1", 8, (300, 800))


def test_summary_counts_false_hits_and_savings() -> None:
    def outcome(i: int, group: str, cache: str, served: str, ms: float) -> Outcome:
        match = "semantic" if cache == "HIT" else None
        return Outcome(i, Question(f"q{i}", group), cache, match, 0.97, ms, served)

    outcomes = [
        outcome(1, "a", "MISS", "a", 500),
        outcome(2, "a", "HIT", "a", 10),
        outcome(3, "b", "HIT", "a", 20),  # the answer of group a for a question of b
        outcome(4, "b", "MISS", "b", 700),
    ]
    assert [o.false_hit for o in outcomes] == [False, False, True, False]
    lines = summary(outcomes, upstream_calls=2, seconds=1.5, saved_ms=900)
    text = "\n".join(lines)
    assert "hit rate        50.0 %  (2 hits: 0 exact, 2 semantic; 2 misses)" in text
    assert "false hits      1  (#3 got a)" in text
    assert "p50 latency     hit 15 ms, miss 600 ms (40x faster)" in text
    assert "upstream calls  2 of 4: 2 saved (50.0 %), about 0.9 s of LLM time" in text
    # #4 asked group b again after #3 and still missed: a paraphrase below the threshold.
    assert "missed          1 paraphrase of earlier questions" in text


def _rows(stdout: str) -> list[re.Match[str]]:
    return [m for line in stdout.splitlines() if (m := ROW.match(line))]


def _summary_int(stdout: str, pattern: str) -> int:
    found = re.search(pattern, stdout)
    assert found is not None, (pattern, stdout)
    return int(found.group(1))


def _scoped_rows(uri: str, scope: str) -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {LOCAL_TABLE} WHERE scope = %s",
            (scope,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_demo_run_matches_its_summary_and_cleans_up(pg_uri: str) -> None:
    done = semcache(
        "demo", "--count", "40", "--latency-ms", "5-15", "--no-live", "--pg-uri", pg_uri
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "threshold: 0.958 (docs/BENCHMARKS.md's recommendation for this embedder)" in out
    assert "embedder: all-MiniLM-L6-v2-int8 (384 dimensions), runs offline" in out
    assert re.search(r"cache scope demo-[0-9a-f]{8}", out)
    rows = _rows(out)
    assert [int(m.group(1)) for m in rows] == list(range(1, 41))
    hits = [m for m in rows if m.group(3).startswith("HIT")]
    misses = [m for m in rows if m.group(3) == "MISS"]
    assert hits, "paraphrases of earlier questions should hit"
    assert misses
    assert all(m.group(4) != "-" and float(m.group(4)) >= 0.958 for m in hits)
    assert all(m.group(4) == "-" for m in misses)
    assert _summary_int(out, r"hit rate\s+[\d.]+ %  \((\d+) hits") == len(hits)
    assert _summary_int(out, r"; (\d+) misses") == len(misses)
    false_hits = sum(1 for m in rows if "FALSE HIT" in m.group(6))
    assert _summary_int(out, r"false hits\s+(\d+)") == false_hits
    # Every miss went to the stand-in; every hit was a call saved.
    assert _summary_int(out, r"upstream calls\s+(\d+) of 40") == len(misses)
    assert _summary_int(out, r"of 40: (\d+) saved") == len(hits)
    # Misses of a group asked before: paraphrases that scored below the threshold.
    group_of = {q: g.id for g in load_groups() for q in g.questions}
    seen: set[str] = set()
    missed = 0
    for m in rows:
        shown = m.group(2).strip()  # long questions are clipped with "..."
        clipped = shown.endswith("...")
        (group,) = {
            g for q, g in group_of.items() if q == shown or (clipped and q.startswith(shown[:-3]))
        }
        missed += m.group(3) == "MISS" and group in seen
        seen.add(group)
    if missed:
        assert _summary_int(out, r"missed\s+(\d+) paraphrases?") == missed
    else:
        assert "paraphrases of earlier questions" not in out
    # The run's scope is gone afterwards: each miss stored one entry, all removed.
    scope = re.search(r"cache scope (demo-[0-9a-f]{8})", out)
    assert scope is not None
    assert f"removed the run's {len(misses)} cache entries (scope {scope.group(1)}" in out
    assert _scoped_rows(pg_uri, scope.group(1)) == 0


def test_demo_keep_leaves_entries_that_stats_and_purge_see(pg_uri: str) -> None:
    done = semcache(
        "demo", "--count", "6", "--latency-ms", "1-5", "--no-live", "--keep", "--pg-uri", pg_uri
    )
    assert done.returncode == 0, done.stderr
    scope = re.search(r"kept the run's entries in scope (demo-[0-9a-f]{8})", done.stdout)
    assert scope is not None
    misses = sum(1 for m in _rows(done.stdout) if m.group(3) == "MISS")
    assert _scoped_rows(pg_uri, scope.group(1)) == misses
    stats = json.loads(semcache("stats", "--json", "--pg-uri", pg_uri).stdout)
    (table,) = [t for t in stats["tables"] if t["table"] == LOCAL_TABLE]
    assert table["scopes"][scope.group(1)]["rows"] == misses
    purged = semcache("purge", "--scope", scope.group(1), "--pg-uri", pg_uri)
    assert f"deleted {misses} entries (scope '{scope.group(1)}')" in purged.stdout
    assert _scoped_rows(pg_uri, scope.group(1)) == 0


def test_demo_live_table_redraws_on_a_terminal(pg_uri: str) -> None:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTIC_CACHE_")}
    argv = ["demo", "--count", "5", "--latency-ms", "1-3", "--pg-uri", pg_uri]
    process = subprocess.Popen(
        [sys.executable, "-m", "semanticcache", *argv],
        stdout=terminal,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(terminal)
    chunks = []
    while True:  # read until the child closes the terminal (EIO on Linux)
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors
    screen = b"".join(chunks).decode()
    assert "\x1b[" in screen  # cursor movement and colours
    assert re.search(r"\[#{30}\] 5/5  hits \d+  misses \d+", screen)
    assert "summary" in screen


def test_demo_on_the_embedded_defaults(tmp_path: Path) -> None:
    done = semcache(
        "demo",
        "--count",
        "6",
        "--latency-ms",
        "1-5",
        "--no-live",
        env={PG_URI_ENV: None, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    data_dir = tmp_path / "fastapi-semcache" / "postgres"
    assert (
        "postgres: started embedded development Postgres at postgresql://postgres@127.0.0.1:"
        in (done.stdout)
    )
    assert f"data {data_dir} (" in done.stdout
    assert len(_rows(done.stdout)) == 6
    assert done.stdout.rstrip().splitlines()[-1] == "postgres: stopped the embedded Postgres"
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
