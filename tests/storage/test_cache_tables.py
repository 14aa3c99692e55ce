"""Finding every cache table of a database (``find_cache_tables``) and opening a store
on an existing table by name."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from semanticcache import ConfigurationError, HashingEmbedder, SemanticCache, StorageError
from semanticcache._storage.pgvector import CacheTable, PgVectorStore, find_cache_tables


async def test_find_cache_tables_by_naming_rule_and_columns(pg_uri: str) -> None:
    for dimension in (16, 40):
        async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension)) as c:
            await c.put("something", b"r")
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        # Look-alikes that are not cache tables: wrong columns, or a name off the rule
        # ("_" is a LIKE wildcard: semcacheXentries_ must not match).
        await conn.execute("CREATE TABLE semcache_entries_fake_8 (id int)")
        await conn.execute(
            "CREATE TABLE semcacheXentries_x_3 (partition bytea, text_digest bytea, "
            "embedding vector(3))"
        )
        tables = await find_cache_tables(conn)
    assert tables == [
        CacheTable("semcache_entries_hashing_v1_16", 16),
        CacheTable("semcache_entries_hashing_v1_40", 40),
    ]


async def test_a_store_on_an_explicit_table(pg_uri: str) -> None:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(12)) as c:
        await c.put("one", b"r")
        await c.put("two", b"r")
        table = c.table
    pool = AsyncConnectionPool(pg_uri, kwargs={"autocommit": True}, open=False)
    await pool.open()
    try:
        store = PgVectorStore(pool, model_id="ignored", dimension=12, table=table)
        assert (store.table, store.dimension) == (table, 12)
        assert (await store.stats()).rows == 2
        assert await store.purge(all=True) == 2
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "name", ["users", "semcache_entries_", "semcache_entries_x; DROP TABLE y_3", "a" * 70]
)
def test_explicit_table_must_follow_the_naming_rule(name: str) -> None:
    pool = AsyncConnectionPool("postgresql://x@127.0.0.1/x", open=False)
    with pytest.raises(ConfigurationError, match="cache table name"):
        PgVectorStore(pool, model_id="m", dimension=3, table=name)


async def test_a_table_of_another_shape_is_refused_at_open_with_what_to_do(pg_uri: str) -> None:
    # A table of the cache's name made before route and model were columns: every write
    # would fail on its own; opening says so once, and how to get past it.
    embedder = HashingEmbedder(24)
    table = SemanticCache(pg_uri=pg_uri, embedder=embedder).table
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        await conn.execute(
            f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "partition bytea NOT NULL, text_digest bytea NOT NULL, scope text NOT NULL "
            "DEFAULT '', lookup_text text NOT NULL, embedding vector(24) NOT NULL, "
            "response bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
            "expires_at timestamptz NOT NULL DEFAULT 'infinity', hit_count bigint NOT NULL "
            "DEFAULT 0, UNIQUE (partition, text_digest))"
        )
    try:
        cache = SemanticCache(pg_uri=pg_uri, embedder=embedder)
        with pytest.raises(StorageError, match=r"lacks the columns model, route") as raised:
            await cache.open()
        assert f'DROP TABLE "{table}" CASCADE' in str(raised.value)
        await cache.close()
    finally:
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
