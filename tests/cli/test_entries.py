"""``semcache report-wrong`` and ``semcache delete`` against a real Postgres and Redis:
the entry a token names is gone from Postgres and Redis, a report keeps its negative,
and another scope's entry (or a token of another key) is left alone."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import psycopg

from semanticcache import CacheKey, CacheSettings, HashingEmbedder, SemanticCache
from semanticcache._entry_token import entry_token
from tests.cli.helpers import assert_one_error_line, semcache

KEY = secrets.token_hex(16)


def _cache(pg_uri: str, redis_url: str) -> SemanticCache:
    settings = CacheSettings(
        pg_uri=pg_uri, redis_uri=redis_url, threshold=0.9, log_digest_key=KEY.encode()
    )
    return SemanticCache(settings=settings, embedder=HashingEmbedder(64))


async def _put(pg_uri: str, redis_url: str, key: CacheKey) -> str:
    async with _cache(pg_uri, redis_url) as cache:
        entry_id = await cache.put(key, b"answer", raise_errors=True)
        assert entry_id is not None
        return entry_token(KEY.encode(), cache.table, entry_id)


async def _served(pg_uri: str, redis_url: str, key: CacheKey) -> bool:
    async with _cache(pg_uri, redis_url) as cache:
        return await cache.get(key) is not None


def _negatives(pg_uri: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(pg_uri) as conn:
        rows = conn.execute(
            "SELECT scope, stored_text, lookup_text FROM semcache_negatives ORDER BY id"
        ).fetchall()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def test_report_wrong_and_delete_by_token(pg_uri: str, redis_url: str) -> None:
    env = {"SEMANTIC_CACHE_LOG_DIGEST_KEY": KEY, "SEMANTIC_CACHE_REDIS_URI": redis_url}
    wrong = CacheKey("What is the capital of Australia?", scope="tenant-a", model="m")
    token = asyncio.run(_put(pg_uri, redis_url, wrong))

    other_scope = semcache(
        "report-wrong", token, "--scope", "tenant-b", "--pg-uri", pg_uri, env=env
    )
    assert other_scope.returncode == 1
    assert "no such entry" in other_scope.stderr
    other_key = semcache(
        "delete", token, "--pg-uri", pg_uri, env={**env, "SEMANTIC_CACHE_LOG_DIGEST_KEY": "k" * 32}
    )
    assert other_key.returncode == 1
    assert asyncio.run(_served(pg_uri, redis_url, wrong))

    done = semcache(
        "report-wrong",
        token,
        "--scope",
        "tenant-a",
        "--lookup-text",
        "capital of Austria?",
        "--pg-uri",
        pg_uri,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "reported wrong" in done.stdout
    # Gone from Postgres and from Redis (a Redis copy would still answer).
    assert not asyncio.run(_served(pg_uri, redis_url, wrong))
    assert _negatives(pg_uri) == [("tenant-a", wrong.text, "capital of Austria?")]

    plain = CacheKey("How many moons does Mars have?", model="m")
    token = asyncio.run(_put(pg_uri, redis_url, plain))
    deleted = semcache("delete", token, "--pg-uri", pg_uri, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert not asyncio.run(_served(pg_uri, redis_url, plain))
    assert len(_negatives(pg_uri)) == 1  # a delete keeps none


def test_without_the_digest_key_tokens_cannot_be_read(pg_uri: str) -> None:
    done = semcache("delete", "00" * 16, "--pg-uri", pg_uri)
    line = assert_one_error_line(done, 2)
    assert "SEMANTIC_CACHE_LOG_DIGEST_KEY" in line


async def _report_two(pg_uri: str) -> None:
    """Two hits reported wrong on the hashing table: one with its lookup text."""
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, log_digest_key=KEY.encode())
    async with SemanticCache(settings=settings, embedder=HashingEmbedder()) as cache:
        for text, asked in (
            ("What is the speed of light?", "What is the speed of sound?"),
            ("Who wrote Hamlet?", None),
        ):
            entry_id = await cache.put(CacheKey(text, scope="neg"), b"x", raise_errors=True)
            assert entry_id is not None
            assert await cache.report_wrong_id(entry_id, lookup_text=asked)


def test_calibrate_reads_the_kept_negatives(pg_uri: str, tmp_path: Path) -> None:
    asyncio.run(_report_two(pg_uri))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"a": "Who wrote Hamlet?", "b": "who wrote hamlet", "same_answer": True}) + "\n"
    )
    args = ("calibrate", "--pairs", str(pairs), "--embedder", "hashing", "--pg-uri", pg_uri)
    done = semcache(*args, "--negatives")
    assert done.returncode == 0, done.stderr
    # The one with its lookup text joins as a different-answer pair; the other cannot.
    assert "negatives: 1 reported wrong (with their lookup text)" in done.stdout
    assert "pairs: 2 (1 same answer, 1 different)" in done.stdout
    # The 64-dimension table's negative (the test above) is another embedder's: left out.
    without = semcache(*args)
    assert without.returncode == 0, without.stderr
    assert "pairs: 1 (1 same answer, 0 different)" in without.stdout


def test_entries_lists_tokens_with_scope_route_and_model(pg_uri: str, redis_url: str) -> None:
    scope = "list-" + secrets.token_hex(4)
    chat, other = "https://api.example/v1/chat", "https://api.example/v1/other"
    peru = asyncio.run(
        _put(
            pg_uri, redis_url, CacheKey("Capital of Peru?", scope=scope, route=chat, model="gpt-x")
        )
    )
    chile = asyncio.run(
        _put(pg_uri, redis_url, CacheKey("Capital of Chile?", scope=scope, route=other))
    )
    env = {"SEMANTIC_CACHE_LOG_DIGEST_KEY": KEY}

    listed = semcache("entries", "--pg-uri", pg_uri, "--scope", scope, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    # Every cache table of the module's database, the others without entries of the scope.
    (table,) = [t for t in json.loads(listed.stdout)["tables"] if t["entries"]]
    assert [e["entry"] for e in table["entries"]] == [chile, peru]  # newest first
    first = table["entries"][1]
    assert (first["scope"], first["route"], first["model"], first["hits"]) == (
        scope,
        chat,
        "gpt-x",
        0,
    )
    assert first["expires_at"] is None
    assert table["entries"][0]["model"] is None

    text = semcache("entries", "--pg-uri", pg_uri, "--scope", scope, "--model", "gpt-x", env=env)
    assert text.returncode == 0, text.stderr
    assert peru in text.stdout
    assert chile not in text.stdout
    assert f"{scope}  gpt-x  {chat}" in text.stdout
    assert "Peru" not in text.stdout + listed.stdout
    by_route = semcache("entries", "--pg-uri", pg_uri, "--route", other, "--limit", "5", env=env)
    assert chile in by_route.stdout
    assert peru not in by_route.stdout

    unset = semcache("entries", "--pg-uri", pg_uri)
    assert "SEMANTIC_CACHE_LOG_DIGEST_KEY" in assert_one_error_line(unset, 2)
