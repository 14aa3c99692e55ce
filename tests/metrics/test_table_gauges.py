"""The per-table gauges: entries and bytes of each open cache's table, read from the
catalog when the metrics are scraped, at most every few seconds."""

from __future__ import annotations

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from semanticcache import (
    CacheKey,
    CacheSettings,
    HashingEmbedder,
    SemanticCache,
    _metrics,
    metrics_app,
)
from tests.middleware.conftest import client_for


async def scrape(table: str) -> tuple[float | None, float | None]:
    """The (entries, bytes) samples of ``table`` the metrics app serves."""
    async with client_for(metrics_app()) as client:
        response = await client.get("/")
    assert response.status_code == 200
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name.startswith("semcache_table_") and s.labels.get("table") == table:
                found[s.name] = s.value
    return found.get("semcache_table_entries"), found.get("semcache_table_bytes")


def relation_size(pg_uri: str, table: str) -> int:
    with psycopg.connect(pg_uri) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_gauges_show_each_table_and_move_after_inserts(
    pg_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_metrics, "_TABLE_FIGURES_SECONDS", 0.0, raising=False)
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, metrics=True)
    async with SemanticCache(settings=settings, embedder=HashingEmbedder(48)) as cache:
        table = cache.table
        entries, size = await scrape(table)
        assert entries == 0  # a new table
        assert size == relation_size(pg_uri, table)
        for i in range(25):
            await cache.put(CacheKey(f"question number {i}"), b"x" * 200, raise_errors=True)
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        entries, grown = await scrape(table)
        assert entries == 25
        assert grown == relation_size(pg_uri, table)
        assert grown is not None
        assert size is not None
        assert grown > size
        # Read at most every _TABLE_FIGURES_SECONDS: a scrape in between serves the last.
        monkeypatch.setattr(_metrics, "_TABLE_FIGURES_SECONDS", 3600.0)
        assert await cache.purge(all=True) == 25
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        assert (await scrape(table))[0] == 25
        monkeypatch.setattr(_metrics, "_TABLE_FIGURES_SECONDS", 0.0, raising=False)
        assert (await scrape(table))[0] == 0
