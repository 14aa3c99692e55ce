"""The load benchmarks' plan guard passes the intended search plan and fails any other.

A tiny table (one partition of 400 rows, 8 dimensions: the HNSW scan is intended) and
planner settings that take the index away, for both of the guard's checks: its own run
of the store's search, and the plans other sessions log during a load.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from benches.plan_guard import (
    EXACT,
    HNSW,
    PlanGuardError,
    check_search_plan,
    enforce,
    intended_plan,
    logged_plans,
    sample_plans,
)
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._storage.pgvector import PgVectorStore, connection_options

DIM = 8
ROWS = 400
PARTITION = b"\x05" * 32
# The sessions' enable_sort = off disables the sort as this disables the index scan;
# the costs then choose, and random index reads made dear choose the sort.
FORCED_SORT = "-c enable_indexscan=off -c random_page_cost=1000"
QUERIES = [[0.1 * ((i + j) % 5) - 0.2 for j in range(DIM)] for i in range(8)]


async def open_store(uri: str, options: str = "") -> tuple[AsyncConnectionPool, PgVectorStore]:
    """A store over a pool as the cache opens it (its session settings, ``options``
    added)."""
    pool = AsyncConnectionPool(
        uri,
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"autocommit": True, "options": f"{connection_options(None)} {options}"},
    )
    await pool.open()
    return pool, PgVectorStore(pool, model_id="plan-guard-test", dimension=DIM)


@pytest.fixture
async def table(pg_uri: str) -> AsyncIterator[str]:
    """One partition of ``ROWS`` random rows, analyzed."""
    pool, store = await open_store(pg_uri)
    try:
        await store.ensure_schema()
        async with pool.connection() as conn:
            await conn.execute(f"TRUNCATE {store.table}")
            await conn.execute(
                f"""
                INSERT INTO {store.table} (partition, text_digest, lookup_text, embedding,
                                           response)
                SELECT %s, int8send(g), 'row ' || g,
                       (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIM})
                        WHERE g > 0)::vector, 'x'
                FROM generate_series(1, {ROWS}) AS g
                """,
                (PARTITION,),
            )
            await conn.execute(f"ANALYZE {store.table}")
        yield store.table
    finally:
        await pool.close()


def test_one_partition_of_400_rows_is_meant_for_the_index() -> None:
    assert intended_plan(ROWS, ROWS) == HNSW
    assert intended_plan(20, 2000) == EXACT


async def test_the_stores_search_passes_on_its_intended_plan(pg_uri: str, table: str) -> None:
    plans = await check_search_plan(
        pg_uri, table=table, dimension=DIM, partition=PARTITION, vectors=QUERIES, expected=HNSW
    )
    assert len(plans) == 8
    assert all("_hnsw" in p.shape and "Sort" not in p.shape for p in plans), plans


async def test_the_stores_search_fails_on_a_forced_sort(pg_uri: str, table: str) -> None:
    with pytest.raises(PlanGuardError) as raised:
        await check_search_plan(
            pg_uri,
            table=table,
            dimension=DIM,
            partition=PARTITION,
            vectors=QUERIES,
            expected=HNSW,
            options=FORCED_SORT,
        )
    message = str(raised.value)
    assert "'exact' plan, not the intended 'hnsw'" in message, message
    assert "Sort" in message, message
    assert "_hnsw" not in message, message


def test_the_guard_fails_when_no_search_was_seen() -> None:
    with pytest.raises(PlanGuardError, match="no search plan was seen"):
        enforce([], HNSW, "nothing")


async def _search_in_new_sessions(uri: str, options: str = "") -> None:
    pool, store = await open_store(uri, options)
    try:
        for q in QUERIES:
            found = await store.search(PARTITION, q, 0.0)
            assert found.nearest is not None
    finally:
        await pool.close()


async def test_plans_logged_by_other_sessions_are_checked(
    pg_uri: str, pg_server: EmbeddedPostgres, table: str
) -> None:
    """What the served app's sessions ran, read back from the server log: the intended
    plan passes; the same searches with the index taken away fail, naming the sort."""
    sample_plans(pg_uri, 1.0)
    try:
        offset = pg_server.log_file.stat().st_size
        await _search_in_new_sessions(pg_uri)
        plans, offset = logged_plans(pg_server.log_file, offset, table)
        assert len(plans) == len(QUERIES)
        enforce(plans, HNSW, "the load")

        await _search_in_new_sessions(pg_uri, FORCED_SORT)
        plans, _ = logged_plans(pg_server.log_file, offset, table)
        assert len(plans) == len(QUERIES)
        with pytest.raises(PlanGuardError) as raised:
            enforce(plans, HNSW, "the load")
        assert "Sort" in str(raised.value), raised.value
    finally:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {conn.info.dbname} RESET ALL")


async def test_a_table_name_never_matches_another_tables_plans(
    pg_uri: str, pg_server: EmbeddedPostgres, table: str
) -> None:
    sample_plans(pg_uri, 1.0)
    try:
        offset = pg_server.log_file.stat().st_size
        await _search_in_new_sessions(pg_uri)
        other = f"semcache_entries_{secrets.token_hex(4)}_8"
        assert logged_plans(pg_server.log_file, offset, other)[0] == []
    finally:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {conn.info.dbname} RESET ALL")
