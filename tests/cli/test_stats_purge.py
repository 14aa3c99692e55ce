"""``semcache stats`` and ``semcache purge`` against a real Postgres, checked by SQL."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from semanticcache import CacheKey, HashingEmbedder, SemanticCache
from semanticcache._devserver import EmbeddedPostgres
from tests.cli.helpers import assert_one_error_line, semcache

TABLE_A = "semcache_entries_hashing_v1_256"
TABLE_B = "semcache_entries_hashing_v1_64"


async def _seed(uri: str) -> None:
    """Two cache tables; scopes tenant-a (3 rows, 2 hits), "" (2 rows) and tenant-b (1)."""
    async with SemanticCache(pg_uri=uri, embedder=HashingEmbedder(), threshold=0.9) as cache:
        for text in ("alpha question", "beta question", "gamma question"):
            await cache.put(CacheKey(text, scope="tenant-a"), b"{}", raise_errors=True)
        for text in ("delta question", "epsilon question"):
            await cache.put(CacheKey(text), b"{}", raise_errors=True)
        assert await cache.get(CacheKey("alpha question", scope="tenant-a")) is not None
        assert await cache.get(CacheKey("beta question", scope="tenant-a")) is not None
        # One lookup that searches (counted under its outcome and nearest similarity)
        # and one in an empty partition (nothing near: not counted).
        searched = await cache.lookup(CacheKey("alpha questions", scope="tenant-a"))
        assert searched.nearest_similarity is not None
        assert searched.nearest_similarity >= 0.5
        assert (await cache.lookup(CacheKey("alpha question", scope="nobody"))).reason == "miss"
    async with SemanticCache(pg_uri=uri, embedder=HashingEmbedder(64), threshold=0.9) as cache:
        await cache.put(CacheKey("zeta question", scope="tenant-b"), b"{}", raise_errors=True)


def _count(uri: str, table: str, where: str = "true") -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(where)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def seeded(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database holding the two seeded cache tables."""
    import asyncio

    name = f"t_cli_{request.node.name[:30].lower().replace('[', '_').replace(']', '')}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    uri = pg_server.create_database(name)
    try:
        asyncio.run(_seed(uri))
        yield uri
    finally:
        pg_server.drop_database(name)


def test_stats_json_matches_the_database(seeded: str) -> None:
    done = semcache("stats", "--json", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is only the JSON document
    tables = {t["table"]: t for t in report["tables"]}
    assert set(tables) == {TABLE_A, TABLE_B}
    a = tables[TABLE_A]
    assert (a["rows"], a["hits"], a["dimension"]) == (5, 2, 256)
    assert a["rows"] == _count(seeded, TABLE_A)
    assert a["scopes"] == {
        "": {"rows": 2, "hits": 0, "expired_rows": 0},
        "tenant-a": {"rows": 3, "hits": 2, "expired_rows": 0},
    }
    with psycopg.connect(seeded) as conn:
        size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (TABLE_A,)).fetchone()
    assert size is not None
    assert a["table_bytes"] == size[0]
    assert tables[TABLE_B]["scopes"] == {"tenant-b": {"rows": 1, "hits": 0, "expired_rows": 0}}
    nearest = a["nearest_similarity"]
    assert len(nearest) == 1  # the one searched lookup, hit or miss
    (counts,) = nearest.values()
    assert len(counts) == 100
    assert sum(counts) == 1
    assert sum(counts[50:]) == 1
    assert tables[TABLE_B]["nearest_similarity"] == {}
    assert report["total"]["rows"] == 6
    assert report["total"]["hits"] == 2
    assert report["postgres"] == seeded
    assert done.stderr == ""


def test_stats_text_lists_tables_and_scopes(seeded: str) -> None:
    done = semcache("stats", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{TABLE_A}  (vector(256)," in out
    assert "rows 5   hits 2   expired 0" in out
    assert any(line.split() == ["tenant-a", "3", "2", "0"] for line in out.splitlines())
    assert any(line.split()[:2] == ['""', "(unscoped)"] for line in out.splitlines())
    assert "nearest similarity of the lookups that searched" in out
    assert any(
        line.split() == ["outcome", "<0.80", "0.80", "0.85", "0.90", "0.95+"]
        for line in out.splitlines()
    )
    assert out.rstrip().splitlines()[-1].startswith("total: 2 tables, 6 rows, 2 hits, 0 expired")


def test_stats_of_an_empty_database(pg_uri: str) -> None:
    done = semcache("stats", "--pg-uri", pg_uri)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"postgres: {pg_uri} (from --pg-uri)",
        "no cache tables in this database (a SemanticCache creates its table on first use)",
    ]


def test_purge_by_scope(seeded: str) -> None:
    done = semcache("purge", "--scope", "tenant-a", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    assert f"{TABLE_A}: deleted 3" in done.stdout
    assert f"{TABLE_B}: deleted 0" in done.stdout
    assert "deleted 3 entries (scope 'tenant-a')" in done.stdout
    assert _count(seeded, TABLE_A) == 2
    assert _count(seeded, TABLE_A, "scope = 'tenant-a'") == 0
    assert _count(seeded, TABLE_B) == 1


def test_purge_older_than_and_expired(seeded: str) -> None:
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {TABLE_A} SET created_at = now() - interval '10 days' "
            "WHERE lookup_text IN ('alpha question', 'delta question')"
        )
        conn.execute(f"UPDATE {TABLE_B} SET expires_at = now() - interval '1 second'")
    done = semcache("purge", "--older-than", "7d", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    assert "deleted 2 entries (older than 7d)" in done.stdout
    assert _count(seeded, TABLE_A) == 3
    assert _count(seeded, TABLE_A, "lookup_text IN ('alpha question', 'delta question')") == 0
    # Selectors combine: tenant-a rows younger than a day are none of the remaining ones.
    done = semcache("purge", "--scope", "tenant-a", "--older-than", "1d", "--pg-uri", seeded)
    assert "deleted 0 entries (scope 'tenant-a', older than 1d)" in done.stdout
    done = semcache("purge", "--expired", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    assert f"{TABLE_B}: deleted 1" in done.stdout
    assert _count(seeded, TABLE_B) == 0
    assert _count(seeded, TABLE_A) == 3


def test_purge_by_route_and_model(seeded: str, redis_url: str) -> None:
    import asyncio

    import redis

    table = "semcache_entries_hashing_v1_32"
    keys = {
        "chat_x": CacheKey("same question", route="/v1/chat", model="x"),
        "chat_y": CacheKey("same question", route="/v1/chat", model="y"),
        "other_x": CacheKey("same question", route="/v1/other", model="x"),
        "old_chat_y": CacheKey("old question", route="/v1/chat", model="y"),
    }

    def cache() -> SemanticCache:
        return SemanticCache(
            pg_uri=seeded, redis_uri=redis_url, embedder=HashingEmbedder(32), threshold=0.9
        )

    async def put() -> None:
        async with cache() as c:
            for key in keys.values():
                await c.put(key, b"{}", raise_errors=True)

    async def served() -> set[str]:
        async with cache() as c:  # a fresh process: Redis, then Postgres
            return {name for name, key in keys.items() if await c.get(key) is not None}

    asyncio.run(put())
    env = {"SEMANTIC_CACHE_REDIS_URI": redis_url}
    done = semcache("purge", "--route", "/v1/chat", "--model", "x", "--pg-uri", seeded, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{table}: deleted 1" in done.stdout
    assert "deleted 1 entries (route '/v1/chat', model 'x')" in done.stdout
    assert asyncio.run(served()) == {"chat_y", "other_x", "old_chat_y"}
    # The Redis copy of the purged row is a tombstone.
    client = redis.Redis.from_url(redis_url)
    try:
        values = [client.get(k) for k in client.keys(f"semcache:{table}:*")]
    finally:
        client.close()
    assert sorted(v[24:25] for v in values if v is not None) == [b"B", b"B", b"B", b"T"]
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {table} SET created_at = now() - interval '10 days' "
            "WHERE lookup_text = 'old question'"
        )
    done = semcache("purge", "--model", "y", "--older-than", "7d", "--pg-uri", seeded, env=env)
    assert "deleted 1 entries (model 'y', older than 7d)" in done.stdout
    assert asyncio.run(served()) == {"chat_y", "other_x"}
    done = semcache("purge", "--route", "/v1/other", "--table", table, "--pg-uri", seeded, env=env)
    assert "deleted 1 entries (route '/v1/other')" in done.stdout
    assert asyncio.run(served()) == {"chat_y"}
    assert _count(seeded, TABLE_A) == 5  # the seeded tables have no such route or model


def test_purge_all_without_a_terminal_needs_yes(seeded: str) -> None:
    done = semcache("purge", "--all", "--pg-uri", seeded)
    line = assert_one_error_line(done, 1)
    assert "refusing to delete all 6 entries without confirmation" in line
    assert "--yes" in line
    assert _count(seeded, TABLE_A) == 5
    done = semcache("purge", "--all", "--yes", "--table", TABLE_B, "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    assert f"{TABLE_B}: deleted 1" in done.stdout
    assert TABLE_A not in done.stdout
    assert _count(seeded, TABLE_B) == 0
    assert _count(seeded, TABLE_A) == 5


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("y\n", True)])
def test_purge_all_asks_on_a_terminal(seeded: str, answer: str, deleted: bool) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())  # typed ahead: the terminal buffers it
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTIC_CACHE_")}
        done = subprocess.run(
            [sys.executable, "-m", "semanticcache", "purge", "--all", "--pg-uri", seeded],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert "Delete all 6 entries of 2 cache tables at postgresql://postgres@" in done.stdout
    assert "[y/N]" in done.stdout
    if deleted:
        assert done.returncode == 0, done.stderr
        assert "deleted 6 entries (all)" in done.stdout
        assert _count(seeded, TABLE_A) + _count(seeded, TABLE_B) == 0
    else:
        assert done.returncode == 1
        assert "nothing deleted" in done.stdout
        assert _count(seeded, TABLE_A) + _count(seeded, TABLE_B) == 6


def test_purge_unknown_table_is_one_line(seeded: str) -> None:
    done = semcache("purge", "--expired", "--table", "semcache_entries_nope_3", "--pg-uri", seeded)
    line = assert_one_error_line(done, 1)
    assert "no cache table named 'semcache_entries_nope_3'" in line


def test_purge_deletes_the_redis_blobs_too(seeded: str, redis_url: str) -> None:
    import asyncio

    import redis

    async def put() -> str:
        async with SemanticCache(
            pg_uri=seeded, redis_uri=redis_url, embedder=HashingEmbedder(32), threshold=0.9
        ) as cache:
            await cache.put(CacheKey("cached in redis", scope="r"), b"{}", raise_errors=True)
            await cache.put(CacheKey("kept in redis", scope="other"), b"{}", raise_errors=True)
            return cache.table

    table = asyncio.run(put())
    client = redis.Redis.from_url(redis_url)
    try:
        assert len(client.keys(f"semcache:{table}:*")) == 2
        done = semcache(
            "purge", "--scope", "r", "--pg-uri", seeded, env={"SEMANTIC_CACHE_REDIS_URI": redis_url}
        )
        assert done.returncode == 0, done.stderr
        assert f"{table}: deleted 1" in done.stdout
        # The deleted row's copy is a tombstone now (kind byte "T"), the other one stays.
        values = [client.get(k) for k in client.keys(f"semcache:{table}:*")]
        assert sorted(v[24:25] for v in values if v is not None) == [b"B", b"T"]
    finally:
        client.close()


def test_purge_without_redis_leaves_no_copy_that_is_served(seeded: str, redis_url: str) -> None:
    import asyncio

    key = CacheKey("cached in redis", scope="r")

    def cache() -> SemanticCache:
        return SemanticCache(
            pg_uri=seeded, redis_uri=redis_url, embedder=HashingEmbedder(32), threshold=0.9
        )

    async def put() -> str:
        async with cache() as c:
            await c.put(key, b"{}", raise_errors=True)
            assert await c.get(key) is not None
            return c.table

    async def served() -> bool:
        async with cache() as c:
            return await c.get(key) is not None

    table = asyncio.run(put())
    done = semcache("purge", "--scope", "r", "--pg-uri", seeded)
    assert done.returncode == 0, done.stderr
    assert f"{table}: deleted 1" in done.stdout
    assert f"warning: {table}: SEMANTIC_CACHE_REDIS_URI is unset" in done.stderr
    assert f"semcache:{table}:*" in done.stderr
    # The copy is still in Redis, and no cache serves it.
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert len(client.keys(f"semcache:{table}:*")) == 1
    finally:
        client.close()
    assert asyncio.run(served()) is False
