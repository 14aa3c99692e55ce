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
    Decision,
    Group,
    Outcome,
    Question,
    StandInLLM,
    build_stream,
    load_groups,
    stand_in_latency_ms,
    summary,
)
from semanticcache._verifier.card import load_card
from tests.cli.helpers import PG_URI_ENV, assert_one_error_line, semcache

LOCAL_TABLE = "semcache_entries_all_minilm_l6_v2_int8_384"
# number, request, cache, similarity, stage 2 (the verifier's probability and verdict,
# or the rule that refused), latency, flag
ROW = re.compile(
    r"^\s*(\d+)  (.{50})  (HIT exact|HIT semantic|MISS)\s+(-|\d\.\d{4})  "
    r"(-|check refused|rejected|\d\.\d{3} served|\d\.\d{3} refused)\s+(\d+) ms(.*)$"
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


def test_summary_counts_paraphrases_near_misses_false_hits_and_savings() -> None:
    def outcome(
        i: int, group: str, cache: str, served: str, ms: float, reason: str, p: float | None
    ) -> Outcome:
        match = "semantic" if cache == "HIT" else None
        return Outcome(i, Question(f"q{i}", group), cache, match, 0.97, ms, served, reason, p)

    outcomes = [
        outcome(1, "a", "MISS", "a", 500, "miss", None),
        outcome(2, "a", "HIT", "a", 10, "hit", 0.95),  # a paraphrase served
        outcome(3, "b", "HIT", "a", 20, "hit", 0.91),  # b looks like a: a near miss served
        outcome(4, "b", "MISS", "b", 700, "unverified", 0.4),  # a paraphrase refused
        outcome(5, "c", "MISS", "c", 600, "disagreement", None),  # c looks like a: refused
        outcome(6, "a", "MISS", "a", 400, "miss", None),  # a paraphrase below the floor
        outcome(7, "d", "ERROR", "d", 300, "store_timeout", None),
    ]
    assert [o.false_hit for o in outcomes] == [False, False, True, False, False, False, False]
    decision = Decision(0.6, "the verifier's floor", "v1", "0.900", "its threshold")
    look_alikes = {"a": {"b", "c"}, "b": {"a"}, "c": {"a"}, "d": set()}
    lines = summary(
        outcomes,
        upstream_calls=5,
        seconds=1.5,
        saved_ms=900,
        decision=decision,
        look_alikes=look_alikes,
    )
    text = "\n".join(lines)
    assert "hit rate        28.6 %  (2 hits: 0 exact, 2 semantic; 5 misses, 1 bypassed" in text
    assert "stage 2         verifier v1 (floor 0.6), hit at p >= 0.900" in text
    assert "paraphrases     1 of 3 served; refused: 1 by the verifier, 1 below the floor" in text
    assert "near misses     1 of 2 refused: 1 by the agreement check; 1 served" in text
    assert "false hits      1  (#3 got a)" in text
    assert "p50 latency     hit 15 ms, miss 500 ms (33x faster)" in text
    assert "upstream calls  5 of 7: 2 saved (28.6 %), about 0.9 s of LLM time" in text
    off = Decision(0.958, "--threshold")
    text = "\n".join(summary(outcomes, 5, 1.5, 900, decision=off, look_alikes=look_alikes))
    assert "stage 2         off: similarity >= 0.958 decides" in text
    assert "refused: 1 by the verifier, 1 below the threshold" in text


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


def _group_of_row(row: re.Match[str]) -> str:
    """The question group of a table row (long questions are clipped with "...")."""
    shown = row.group(2).strip()
    clipped = shown.endswith("...")
    (group,) = {
        g.id
        for g in load_groups()
        for q in g.questions
        if q == shown or (clipped and q.startswith(shown[:-3]))
    }
    return group


def test_demo_run_with_the_verifier_serves_only_right_answers_and_adds_up(pg_uri: str) -> None:
    groups = load_groups()
    total = sum(len(g.questions) for g in groups)
    done = semcache("demo", "--latency-ms", "5-15", "--no-live", "--pg-uri", pg_uri)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    card = load_card()
    thresholds = card.thresholds_for(0.01)
    described = (
        f"{thresholds.threshold:.3f} ({thresholds.reordered:.3f} with "
        f"{100 * card.reordered_words:.0f} % of the words shared)"
    )
    # A pair takes one of the two, by how many of its words it shares.
    lowest = float(f"{min(thresholds.threshold, thresholds.reordered):.3f}")
    highest = float(f"{max(thresholds.threshold, thresholds.reordered):.3f}")
    assert "embedder: all-MiniLM-L6-v2-int8 (384 dimensions), runs offline" in out
    assert (
        f"stage 1: the nearest cached question, if its similarity is >= {card.floor} "
        "(the verifier's floor)" in out
    )
    assert f"stage 2: the agreement check, then the verifier {card.name}:\n" in out
    assert f"want the same answer is >= {described}\n" in out
    assert "(its threshold for <= 1 % false hits: SEMANTIC_CACHE_MAX_FALSE_HIT_RATE)" in out
    assert re.search(r"cache scope demo-[0-9a-f]{8}", out)
    rows = _rows(out)
    assert [int(m.group(1)) for m in rows] == list(range(1, total + 1))
    hits = [m for m in rows if m.group(3).startswith("HIT")]
    misses = [m for m in rows if m.group(3) == "MISS"]
    assert len(hits) + len(misses) == total
    assert hits, "the verifier should serve some paraphrases of earlier questions"
    # Each question is sent once: every hit is semantic, served by the verifier at or
    # above its threshold, with the answer of the question's own group.
    assert all(m.group(3) == "HIT semantic" for m in hits)
    assert all(float(m.group(4)) >= card.floor for m in hits)
    assert all(m.group(5).endswith(" served") for m in hits)
    assert all(float(m.group(5).split()[0]) >= lowest for m in hits)
    assert not any("FALSE HIT" in m.group(7) for m in rows)
    refused = [m for m in misses if re.fullmatch(r"\d\.\d{3} refused", m.group(5))]
    assert all(float(m.group(5).split()[0]) <= highest for m in refused)
    assert all(float(m.group(4)) >= card.floor for m in refused)
    # What each request was when it was sent, from the question file: a paraphrase (its
    # group asked before), a near miss (a look-alike group asked before, its own not).
    look_alikes: dict[str, set[str]] = {g.id: set() for g in groups}
    for g in groups:
        if g.near_miss_of is not None:
            look_alikes[g.id].add(g.near_miss_of)
            look_alikes[g.near_miss_of].add(g.id)
    asked: set[str] = set()
    paraphrases: list[re.Match[str]] = []
    near: list[re.Match[str]] = []
    for m in rows:
        group = _group_of_row(m)
        if group in asked:
            paraphrases.append(m)
        elif look_alikes[group] & asked:
            near.append(m)
        else:
            assert m.group(3) == "MISS", "a question of a new group cannot hit"
        asked.add(group)
    assert near, "the stream should hold near misses"

    served = sum(1 for m in paraphrases if m.group(3) == "HIT semantic")
    assert served == len(hits)
    missed = [m for m in paraphrases if m.group(3) == "MISS"]
    by_verifier = sum(1 for m in missed if re.fullmatch(r"\d\.\d{3} refused", m.group(5)))
    by_check = sum(1 for m in missed if m.group(5) == "check refused")
    below = [m for m in missed if m.group(5) == "-"]  # no candidate at the floor
    assert all(m.group(4) == "-" or float(m.group(4)) < card.floor for m in below)
    assert served + by_verifier + by_check + len(below) == len(paraphrases)
    expected = f"  paraphrases     {served} of {len(paraphrases)} served; refused: "
    line = next(x for x in out.splitlines() if x.startswith(expected))
    for n, what in (
        (by_verifier, "by the verifier"),
        (by_check, "by the agreement check"),
        (len(below), "below the floor"),
    ):
        assert (f"{n} {what}" in line) if n else (what not in line), line
    near_refused = sum(1 for m in near if m.group(3) == "MISS")
    assert near_refused == len(near)
    assert f"  near misses     {len(near)} of {len(near)} refused: " in out
    assert "false hits      0  (every hit answered its own question group)" in out
    assert _summary_int(out, r"hit rate\s+[\d.]+ %  \((\d+) hits") == len(hits)
    assert _summary_int(out, r"; (\d+) misses") == len(misses)
    assert (
        f"  stage 2         verifier {card.name} (floor {card.floor}), hit at p >= {described}"
        in out
    )
    # Every miss went to the stand-in; every hit was a call saved.
    assert _summary_int(out, rf"upstream calls\s+(\d+) of {total}") == len(misses)
    assert _summary_int(out, rf"of {total}: (\d+) saved") == len(hits)
    # The run's scope is gone afterwards: each miss stored one entry, all removed.
    scope = re.search(r"cache scope (demo-[0-9a-f]{8})", out)
    assert scope is not None
    assert f"removed the run's {len(misses)} cache entries (scope {scope.group(1)}" in out
    assert _scoped_rows(pg_uri, scope.group(1)) == 0


def test_demo_without_the_verifier_decides_on_similarity(pg_uri: str) -> None:
    done = semcache(
        "demo", "--count", "40", "--latency-ms", "1-5", "--no-live", "--no-verifier",
        "--pg-uri", pg_uri,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "threshold: 0.958 (docs/BENCHMARKS.md's recommendation for this embedder)" in out
    assert "stage 2: off, similarity alone decides (after the agreement check)" in out
    assert "stage 2         off: similarity >= 0.958 decides" in out
    rows = _rows(out)
    assert len(rows) == 40
    hits = [m for m in rows if m.group(3).startswith("HIT")]
    assert hits
    assert all(float(m.group(4)) >= 0.958 and m.group(5) == "-" for m in hits)
    assert not any(m.group(5).endswith(" served") for m in rows)
    assert _summary_int(out, r"false hits\s+(\d+)") == sum(
        1 for m in rows if "FALSE HIT" in m.group(7)
    )


def test_demo_threshold_needs_the_verifier_off() -> None:
    done = semcache("demo", "--threshold", "0.9", "--count", "1")
    line = assert_one_error_line(done, 2)
    assert "--threshold" in line
    assert "--no-verifier" in line


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
