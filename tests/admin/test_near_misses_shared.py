"""Near misses in Postgres: one cache's near miss is listed by another cache (its own
pool, as another process would have) on the same database, a scope's admin token sees
its own scope's alone, exact hits and plain far misses write nothing, no lookup text
reaches the table, the table keeps its most recent rows, and a stopped Postgres drops
them (logged without text) while the admin endpoint lists the process's own."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from semanticcache import (
    CacheKey,
    CacheSettings,
    SemanticCache,
    _native,
    admin_app,
    admin_scope_token,
)
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._entry_token import entry_token
from semanticcache._storage import near_misses
from semanticcache._storage.near_misses import NearMiss
from tests.admin.questions import Questions
from tests.servers import free_port

KEY = secrets.token_bytes(32)
ADMIN = "operator-" + secrets.token_hex(16)


def _cache(uri: str, model_id: str, **extra: object) -> SemanticCache:
    settings = CacheSettings(
        pg_uri=uri,
        threshold=0.9,
        agreement_check=False,
        log_digest_key=KEY,
        admin_token=ADMIN.encode(),
    )
    return SemanticCache(settings=settings, embedder=Questions(model_id), **extra)  # type: ignore[arg-type]


@pytest.fixture
def model_id() -> str:
    return f"shared-{secrets.token_hex(4)}"  # a fresh table per test


@pytest.fixture
async def writer(pg_uri: str, model_id: str) -> AsyncIterator[SemanticCache]:
    async with _cache(pg_uri, model_id) as cache:
        yield cache


@pytest.fixture
async def reader(pg_uri: str, model_id: str) -> AsyncIterator[SemanticCache]:
    async with _cache(pg_uri, model_id) as cache:
        yield cache


def _client(cache: SemanticCache) -> httpx.AsyncClient:
    app = FastAPI()
    app.mount("/admin", admin_app(cache))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _rows(uri: str, table: str) -> list[tuple[object, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(
            "SELECT * FROM semcache_near_misses WHERE cache_table = %s ORDER BY id", (table,)
        ).fetchall()


async def test_another_cache_lists_the_near_misses_of_one(
    pg_uri: str, writer: SemanticCache, reader: SemanticCache
) -> None:
    assert writer.table == reader.table

    def key(text: str) -> CacheKey:
        return CacheKey(text, scope="tenant-a", route="/v1/chat", model="m")

    entry_id = await writer.put(key("stored question"), b"answer")
    assert entry_id is not None
    exact = await writer.lookup(key("stored question"))
    assert exact.hit is not None
    assert exact.hit.match == "exact"
    far = await writer.lookup(key("far question"))
    assert far.reason == "miss"
    await writer.flush_hits()
    assert _rows(pg_uri, writer.table) == []  # neither an exact hit nor a far miss
    near = await writer.lookup(key("near question"))
    assert near.reason == "miss"
    await writer.flush_hits()

    # Only the near miss, digests only.
    (row,) = _rows(pg_uri, writer.table)
    assert "question" not in repr(row)
    assert reader.activity.near_misses() == []  # the reader saw nothing itself

    async with _client(reader) as client:
        listed = await client.get("/admin/near-misses", headers=_bearer(ADMIN))
        assert listed.status_code == 200
        body = listed.json()
        data = (await client.get("/admin/dashboard/data", headers=_bearer(ADMIN))).json()
        panel = (await client.get("/admin/dashboard/panel", headers=_bearer(ADMIN))).text
    assert body["source"] == "postgres"
    (found,) = body["near_misses"]
    assert found["entry"] == entry_token(KEY, writer.table, entry_id)
    assert found["text_digest"] == _native.hmac_sha256_hex(KEY, b"near question", 16)
    assert found["reason"] == "miss"
    assert found["similarity"] == pytest.approx(0.855, abs=1e-3)
    assert found["scope_digest"] == _native.hmac_sha256_hex(KEY, b"tenant-a", 16)
    assert "question" not in listed.text
    assert data["near_misses"] == body["near_misses"]
    assert data["near_misses_source"] == "postgres"
    assert "Most recent near misses (all processes)" in panel
    assert found["text_digest"] in panel
    assert found["scope_digest"] in panel


async def test_a_scope_token_lists_its_own_scope_alone(
    writer: SemanticCache, reader: SemanticCache
) -> None:
    for scope in ("tenant-a", "tenant-b"):
        assert await writer.put(CacheKey("stored question", scope=scope), b"answer") is not None
        missed = await writer.lookup(CacheKey("near question", scope=scope))
        assert missed.reason == "miss"
    await writer.flush_hits()
    digest = {s: _native.hmac_sha256_hex(KEY, s.encode(), 16) for s in ("tenant-a", "tenant-b")}

    async with _client(reader) as client:

        async def listed(token: str, scope: str | None) -> httpx.Response:
            params = {} if scope is None else {"scope": scope}
            return await client.get("/admin/near-misses", headers=_bearer(token), params=params)

        own = await listed(admin_scope_token(ADMIN, "tenant-a"), "tenant-a")
        assert own.status_code == 200
        assert [n["scope_digest"] for n in own.json()["near_misses"]] == [digest["tenant-a"]]
        # Another scope, or every scope: refused as a wrong token is.
        for named in ("tenant-b", None, ""):
            refused = await listed(admin_scope_token(ADMIN, "tenant-a"), named)
            assert refused.status_code == 401, named
            assert refused.content == b""
        every = await listed(ADMIN, None)
        assert sorted(n["scope_digest"] for n in every.json()["near_misses"]) == sorted(
            digest.values()
        )
        only_b = await listed(ADMIN, "tenant-b")
        assert [n["scope_digest"] for n in only_b.json()["near_misses"]] == [digest["tenant-b"]]
        assert (await listed(ADMIN, "")).json()["near_misses"] == []
        bad = await listed(ADMIN, "x" * 2000)
        assert bad.status_code == 400
        post = await client.post("/admin/near-misses", headers=_bearer(ADMIN))
        assert post.status_code == 405


async def test_the_table_keeps_the_most_recent_of_each_cache_table(
    pg_uri: str, writer: SemanticCache
) -> None:
    other = f"{writer.table}_other"

    def made(i: int) -> NearMiss:
        return NearMiss(1_000_000.0 + i, "", f"{i:016x}", None, 0.85, "miss")

    await near_misses.write(writer.store.pool, other, [made(0)], keep=3)
    for start in (0, 4):
        batch = [made(start + i) for i in range(4)]
        await near_misses.write(writer.store.pool, writer.table, batch, keep=3)
    kept = [str(r[4]) for r in _rows(pg_uri, writer.table)]
    assert kept == [f"{i:016x}" for i in (5, 6, 7)]
    assert len(_rows(pg_uri, other)) == 1  # another table's rows are left alone
    async with writer.store.pool.connection() as conn:
        newest = await near_misses.read(conn, writer.table, scope=None, limit=2)
    assert [n.text_digest for n in newest] == [f"{i:016x}" for i in (7, 6)]

    # Waiting rows are bounded too: the oldest give way.
    pending = writer._background.pending_near_misses
    for i in range(near_misses.KEPT + 10):
        writer._background.add_near_miss(made(i))
    assert len(pending) == near_misses.KEPT
    assert pending[0] == made(10)
    pending.clear()


async def test_a_stopped_postgres_drops_them_and_the_process_lists_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    uri = await asyncio.to_thread(server.start)
    try:
        cache = _cache(
            uri,
            "stopped",
            hit_flush_interval=3600,
            store_timeout=0.5,
            breaker_failures=2,
            breaker_cooldown=0.2,
            connect_timeout=2,
        )
        async with cache:
            assert await cache.put("stored question", b"answer") is not None
            near = await cache.lookup("near question")
            assert near.reason == "miss"
            await asyncio.to_thread(server.stop)
            caplog.set_level(logging.WARNING, logger="semanticcache")
            await cache.flush_hits()  # never raises
            assert "dropped 1 near misses" in caplog.text
            async with _client(cache) as client:
                listed = await client.get("/admin/near-misses", headers=_bearer(ADMIN))
                data = await client.get("/admin/dashboard/data", headers=_bearer(ADMIN))
                panel = await client.get("/admin/dashboard/panel", headers=_bearer(ADMIN))
            assert listed.status_code == 200
            assert listed.json()["source"] == "process"
            (found,) = listed.json()["near_misses"]
            assert found["text_digest"] == _native.hmac_sha256_hex(KEY, b"near question", 16)
            assert data.json()["postgres"] == "unavailable"
            assert data.json()["near_misses"] == listed.json()["near_misses"]
            assert "Most recent near misses (this process)" in panel.text
            assert "question" not in caplog.text
    finally:
        await asyncio.to_thread(server.stop)
