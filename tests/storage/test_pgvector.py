"""PgVectorStore.lookup: the exact probe and the similarity search in one statement."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from semanticcache.key import lookup_digest
from semanticcache.storage.pgvector import BinaryVector, PgVectorStore, connection_options

DIM = 8


def vec(*head: float) -> list[float]:
    return [*head, *([0.0] * (DIM - len(head)))]


def at_similarity(sim: float, axis: int) -> list[float]:
    """A unit vector with cosine ``sim`` to e0, leaning towards e_axis."""
    v = vec()
    v[0], v[axis] = sim, math.sqrt(1.0 - sim * sim)
    return v


@pytest.fixture
async def store(pg_uri: str) -> AsyncIterator[PgVectorStore]:
    pool = AsyncConnectionPool(
        pg_uri,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True, "options": connection_options(None)},
        open=False,
    )
    await pool.open()
    try:
        s = PgVectorStore(pool, model_id="lookup-test", dimension=DIM)
        await s.ensure_schema()
        yield s
    finally:
        await pool.close()


async def put(store: PgVectorStore, partition: bytes, text: str, vector: list[float]) -> int:
    return await store.put(partition, lookup_digest(text), text, vector, f"answer {text}".encode())


async def test_an_exact_row_comes_alone_whatever_the_vector(store: PgVectorStore) -> None:
    partition = secrets.token_bytes(32)
    exact_id = await put(store, partition, "stored far", at_similarity(0.1, 1))
    await put(store, partition, "stored near", at_similarity(0.99, 2))
    rows = await store.lookup(partition, lookup_digest("stored far"), vec(1.0), 0.9, k=5)
    assert len(rows) == 1
    (row,) = rows
    assert (row.id, row.similarity, row.response) == (exact_id, 1.0, b"answer stored far")
    assert row.text_digest == lookup_digest("stored far")
    assert row.lookup_text == "stored far"
    assert row.created_at.tzinfo is not None


async def test_without_an_exact_row_it_is_the_search(store: PgVectorStore) -> None:
    partition = secrets.token_bytes(32)
    for i, sim in enumerate((0.99, 0.97, 0.93, 0.5), start=1):
        await put(store, partition, f"stored {sim}", at_similarity(sim, i))
    digest = lookup_digest("not stored")
    for k in (1, 3, 10):
        looked_up = await store.lookup(partition, digest, vec(1.0), 0.9, k=k)
        searched = await store.search(partition, vec(1.0), 0.9, k=k)
        assert looked_up == searched
        assert [round(r.similarity, 4) for r in looked_up] == [0.99, 0.97, 0.93][:k]
        # Only the best candidate carries its response and its lookup text.
        assert [r.response for r in looked_up] == [b"answer stored 0.99"] + [b""] * (
            len(looked_up) - 1
        )
        assert [r.lookup_text for r in looked_up] == ["stored 0.99"] + [None] * (len(looked_up) - 1)
    assert await store.lookup(partition, digest, vec(1.0), 0.995, k=3) == []


async def test_partitions_and_expiry_hold_for_both_halves(store: PgVectorStore) -> None:
    mine, other = secrets.token_bytes(32), secrets.token_bytes(32)
    await put(store, other, "shared text", vec(1.0))
    digest = lookup_digest("shared text")
    assert await store.lookup(mine, digest, vec(1.0), 0.0, k=5) == []
    expired = await put(store, mine, "shared text", vec(1.0))
    async with store.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {store.table} SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired,),
        )
    # Neither the exact probe nor the search serves the expired row.
    assert await store.lookup(mine, digest, vec(1.0), 0.0, k=5) == []


async def plan(
    conn: psycopg.AsyncConnection[tuple[object, ...]], query: bytes, params: dict[str, object]
) -> dict[str, object]:
    # Explain the statement exactly as the store sends it (bound parameters).
    cur = await conn.execute(b"EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) " + query, params)
    row = await cur.fetchone()
    assert row is not None
    doc: list[dict[str, dict[str, object]]] = (
        json.loads(row[0]) if isinstance(row[0], str) else row[0]  # type: ignore[assignment]
    )
    return doc[0]["Plan"]


def nodes(node: dict[str, object]) -> list[dict[str, object]]:
    children = node.get("Plans", [])
    assert isinstance(children, list)
    return [node, *(n for child in children for n in nodes(child))]


async def test_plan_exact_hit_never_runs_the_hnsw_scan(store: PgVectorStore) -> None:
    """The exact probe gates the HNSW scan (a one-time filter), and without an exact row
    the scan is pgvector's index scan under the partition filter."""
    partition = secrets.token_bytes(32)
    await put(store, partition, "the exact one", vec(1.0))
    async with store.pool.connection() as conn:
        # A table where HNSW is the planner's choice, as in production; with few rows
        # it would rather sort (see test_a_small_partition_still_gets_its_top_k).
        await conn.execute("SET enable_sort = off")
        await conn.execute(
            f"""
            INSERT INTO {store.table} (partition, text_digest, lookup_text, embedding, response)
            SELECT %s, int8send(g), 'row ' || g,
                   (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIM})
                    WHERE g > 0)::vector, 'x'
            FROM generate_series(1, 2000) AS g
            """,
            (partition,),
        )
        await conn.execute(f"ANALYZE {store.table}")
        params: dict[str, object] = {
            "v": BinaryVector.pack(vec(1.0, 0.5)),
            "p": partition,
            "k": 1,
            "th": 0.0,
        }
        query = store._lookup_top1_query  # the statement under test, as the store sends it

        hit = await plan(conn, query, {**params, "d": lookup_digest("the exact one")})
        scans = [n for n in nodes(hit) if str(n.get("Index Name", "")).endswith("_hnsw")]
        assert scans, "the HNSW index is the search's access path"
        assert all(n["Actual Loops"] == 0 for n in scans)  # "never executed"
        gates = [n for n in nodes(hit) if "One-Time Filter" in n]
        assert gates

        miss = await plan(conn, query, {**params, "d": lookup_digest("not stored")})
        scans = [n for n in nodes(miss) if str(n.get("Index Name", "")).endswith("_hnsw")]
        assert scans
        assert all(n["Actual Loops"] == 1 for n in scans)
        assert any("partition" in str(n.get("Filter", "")) for n in scans)
        await conn.execute("RESET enable_sort")
