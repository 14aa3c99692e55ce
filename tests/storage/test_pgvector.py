"""PgVectorStore.lookup: the exact probe and the similarity search in one statement."""

from __future__ import annotations

import contextlib
import math
import re
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from semanticcache._key import lookup_digest
from semanticcache._storage.pgvector import PgVectorStore, SearchResult, connection_options
from semanticcache._storage.plan import partition_verdicts
from semanticcache._storage.plan import plan_verdict as _plan_verdict

DIM = 8


def vec(*head: float) -> list[float]:
    return [*head, *([0.0] * (DIM - len(head)))]


def at_similarity(sim: float, axis: int) -> list[float]:
    """A unit vector with cosine ``sim`` to e0, leaning towards e_axis."""
    v = vec()
    v[0], v[axis] = sim, math.sqrt(1.0 - sim * sim)
    return v


async def log_plans(
    conn: psycopg.AsyncConnection[tuple[object, ...]], *, analyze: bool = False
) -> list[str]:
    """Have ``conn`` report every plan it runs (with ``analyze``, the nodes it never
    executed marked so, and the buffers each node read) as a notice; the list the plans
    are appended to."""
    plans: list[str] = []
    await conn.execute("LOAD 'auto_explain'")
    await conn.execute("SET auto_explain.log_min_duration = 0")
    if analyze:
        await conn.execute("SET auto_explain.log_analyze = on")
        await conn.execute("SET auto_explain.log_buffers = on")
    await conn.execute("SET auto_explain.log_nested_statements = on")
    await conn.execute("SET client_min_messages = log")  # the plans come as notices
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    return plans


@contextlib.asynccontextmanager
async def open_store(pg_uri: str, model_id: str, dim: int = DIM) -> AsyncIterator[PgVectorStore]:
    """A store over a pool of one connection: settings made on it apply to the lookups."""
    pool = AsyncConnectionPool(
        pg_uri,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True, "options": connection_options(None)},
        open=False,
    )
    await pool.open()
    try:
        s = PgVectorStore(pool, model_id=model_id, dimension=dim)
        await s.ensure_schema()
        yield s
    finally:
        await pool.close()


@pytest.fixture
async def store(pg_uri: str) -> AsyncIterator[PgVectorStore]:
    async with open_store(pg_uri, "lookup-test") as s:
        yield s


async def put(store: PgVectorStore, partition: bytes, text: str, vector: list[float]) -> int:
    answer = f"answer {text}".encode()
    return (await store.put_entry(partition, lookup_digest(text), text, vector, answer)).id


async def test_an_exact_row_comes_alone_whatever_the_vector(store: PgVectorStore) -> None:
    partition = secrets.token_bytes(32)
    exact_id = await put(store, partition, "stored far", at_similarity(0.1, 1))
    await put(store, partition, "stored near", at_similarity(0.99, 2))
    found = await store.lookup(partition, lookup_digest("stored far"), vec(1.0), 0.9, k=5)
    assert found.nearest == 1.0
    (row,) = found.matches
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
        found = await store.lookup(partition, digest, vec(1.0), 0.9, k=k)
        assert found == await store.search(partition, vec(1.0), 0.9, k=k)
        assert found.nearest == pytest.approx(0.99, abs=1e-4)
        looked_up = found.matches
        assert [round(r.similarity, 4) for r in looked_up] == [0.99, 0.97, 0.93][:k]
        # Only the best candidate carries its response; each carries its lookup text
        # (the agreement check may pass over the best).
        assert [r.response for r in looked_up] == [b"answer stored 0.99"] + [b""] * (
            len(looked_up) - 1
        )
        assert [r.lookup_text for r in looked_up] == [
            f"stored {sim}" for sim in (0.99, 0.97, 0.93)
        ][:k]
    # Nothing passes 0.995: no candidate, no response shipped, but the nearest
    # similarity is still reported (what the miss missed by).
    for k in (1, 3):
        missed = await store.lookup(partition, digest, vec(1.0), 0.995, k=k)
        assert missed.matches == []
        assert missed.nearest == pytest.approx(0.99, abs=1e-4)


async def test_an_empty_partition_has_no_nearest(store: PgVectorStore) -> None:
    empty = secrets.token_bytes(32)
    await put(store, secrets.token_bytes(32), "elsewhere", vec(1.0))
    for k in (1, 3):
        found = await store.lookup(empty, lookup_digest("elsewhere"), vec(1.0), 0.0, k=k)
        assert (found.matches, found.nearest) == ([], None)


async def test_partitions_and_expiry_hold_for_both_halves(store: PgVectorStore) -> None:
    mine, other = secrets.token_bytes(32), secrets.token_bytes(32)
    await put(store, other, "shared text", vec(1.0))
    digest = lookup_digest("shared text")
    assert await store.lookup(mine, digest, vec(1.0), 0.0, k=5) == SearchResult([], None)
    expired = await put(store, mine, "shared text", vec(1.0))
    async with store.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {store.table} SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired,),
        )
    # Neither the exact probe nor the search serves the expired row.
    assert await store.lookup(mine, digest, vec(1.0), 0.0, k=5) == SearchResult([], None)


async def test_exact_hit_never_runs_the_hnsw_scan(pg_uri: str) -> None:
    """auto_explain shows the lookup statement's plan: without an exact row, the search
    is pgvector's HNSW index scan under the partition filter; with one, the search never
    starts."""
    async with open_store(pg_uri, "exact-hit-plan") as store:
        await _exact_hit_never_runs_the_hnsw_scan(store)


async def _exact_hit_never_runs_the_hnsw_scan(store: PgVectorStore) -> None:
    partition = secrets.token_bytes(32)
    await put(store, partition, "the exact one", vec(1.0))
    async with store.pool.connection() as conn:
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
        plans = await log_plans(conn, analyze=True)
    # The pool holds one connection: the lookups below run on the one set up above.
    semantic = (
        await store.lookup(partition, lookup_digest("not stored"), vec(1.0, 0.5), 0.0)
    ).matches
    assert semantic
    assert semantic[0].text_digest != lookup_digest("the exact one") or len(semantic) == 1
    (searched,) = [p for p in plans if "_hnsw" in p]
    assert "partition" in searched
    assert not [line for line in searched.splitlines() if "never executed" in line]
    plans.clear()
    exact = await store.lookup(partition, lookup_digest("the exact one"), vec(1.0, 0.5), 0.0)
    assert [e.similarity for e in exact.matches] == [1.0]
    (probed,) = plans
    hnsw = [line for line in probed.splitlines() if "_hnsw" in line]
    assert hnsw, probed
    assert all("never executed" in line for line in hnsw), probed


async def test_a_large_partition_keeps_its_hnsw_plan_among_tiny_ones(pg_uri: str) -> None:
    """Postgres may keep one generic plan for the search (no planning per lookup). One
    large partition among thousands of one-row ones (a common system prompt beside many
    conversations): lookups in the tiny partitions must not leave behind a generic plan
    that sorts the large one (the store's plan policy reads the skew). Its search stays the
    HNSW scan, and a tiny partition's is the btree probe and an exact sort."""
    async with open_store(pg_uri, "plan-test") as store:
        pool = store.pool
        large = b"\x01" * 32
        async with pool.connection() as conn:
            await conn.execute(f"TRUNCATE {store.table}")
            await conn.execute(
                f"""
                INSERT INTO {store.table} (partition, text_digest, lookup_text, embedding,
                                           response)
                SELECT CASE WHEN g <= 6000 THEN %s ELSE int4send(g) END, int8send(g),
                       'row ' || g,
                       (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIM})
                        WHERE g > 0)::vector, 'x'
                FROM generate_series(1, 9000) AS g
                """,
                (large,),
            )
            await conn.execute(f"ANALYZE {store.table}")
            plans = await log_plans(conn)
        for lookup in (False, True):
            for g in range(6001, 6011):  # past the plan cache's five custom plans
                tiny = g.to_bytes(4, "big")
                plans.clear()
                if lookup:
                    found = await store.lookup(tiny, b"none", vec(1.0), 0.0)
                else:
                    found = await store.search(tiny, vec(1.0), 0.0)
                assert found.nearest is not None  # random vectors: it may lie below 0
                searched = [p for p in plans if "ORDER BY" in p or "Limit" in p]
                assert searched, plans
                assert all("_hnsw" not in p for p in searched), plans
            plans.clear()
            if lookup:
                found = await store.lookup(large, b"none", vec(1.0), 0.0)
            else:
                found = await store.search(large, vec(1.0), 0.0)
            assert found.nearest is not None
            searched = [p for p in plans if "_hnsw" in p]
            assert searched, plans
            assert not [p for p in searched if "Sort" in p], searched


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        (None, "custom"),  # no table statistics (analyzing failed): plan each search
        ((0.0, None, None), "custom"),
        ((1000.0, 1.0, 1.0), "index"),  # one partition of 1,000: the HNSW scan
        ((100.0, 1.0, 1.0), "exact"),  # one partition of 100: reading them is cheaper
        ((100_000.0, 500.0, 0.0025), "exact"),  # 500 partitions of 200 rows alike
        ((1_000_000.0, 10.0, 0.1), "index"),  # 10 partitions of 100,000
        ((100_000.0, -0.5, None), "exact"),  # 50,000 partitions of two rows
        ((9000.0, -0.3334, 0.6667), "custom"),  # 6,000 rows beside 3,000 one-row partitions
        ((3000.0, 1001.0, 0.5), "custom"),  # 1,500 rows beside 1,000 one-row partitions
    ],
)
def test_the_plan_policy_reads_partition_sizes_from_the_statistics(
    row: tuple[float, float | None, float | None] | None, verdict: str
) -> None:
    assert _plan_verdict(row) == verdict


BIG, OTHER = b"\x01" * 32, b"\x02" * 32


@pytest.mark.parametrize(
    ("row", "listed", "others"),
    [
        # 5,000 rows beside 1,000 partitions of 5: the big one the index's, the rest read.
        ((10_000.0, 1001.0, 0.5, BIG.hex(), "0.5"), {BIG: "index"}, "exact"),
        # Two listed (2,000 and 20 rows); 1,980 unlisted rows in 98 partitions.
        (
            (4000.0, 100.0, 0.5, f"{BIG.hex()},{OTHER.hex()}", "0.5,0.005"),
            {BIG: "index", OTHER: "exact"},
            "exact",
        ),
        # 20,000 unlisted rows in 2 partitions (20,000 listed in 2): the index's too.
        (
            (40_000.0, 4.0, 0.25, f"{BIG.hex()},{OTHER.hex()}", "0.25,0.25"),
            {BIG: "index", OTHER: "index"},
            "index",
        ),
        # Every partition listed: one not listed is new since the statistics.
        (
            (3000.0, 2.0, 0.9, f"{BIG.hex()},{OTHER.hex()}", "0.9,0.1"),
            {BIG: "index", OTHER: "exact"},
            "exact",
        ),
        # Nothing listed, or no statistics: every partition planned on each call.
        ((3000.0, 1001.0, None, None, None), {}, "custom"),
        (None, {}, "custom"),
    ],
)
def test_the_statistics_size_the_partitions_of_a_skewed_table(
    row: tuple[object, ...] | None, listed: dict[bytes, str], others: str
) -> None:
    assert partition_verdicts(row) == (listed, others)


WIDE = 384  # the default local model's dimension


async def fill_wide(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    table: str,
    partitions: str,
    rows: int,
    params: tuple[object, ...] = (),
) -> None:
    """``rows`` random 384-dimension rows, each with an incompressible 600-byte response
    (a stored response, beside which a vector stored out of line costs a scan three
    buffers a row); ``partitions`` is the SQL of each row ``g``'s partition."""
    await conn.execute(
        f"""
        INSERT INTO {table} (partition, text_digest, lookup_text, embedding, response)
        SELECT {partitions}, int8send(g), 'row ' || g,
               (SELECT array_agg(random() - 0.5) FROM generate_series(1, {WIDE})
                WHERE g > 0)::vector,
               (SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 19) AS i
                WHERE g > 0)::bytea
        FROM generate_series(1, {rows}) AS g
        """,
        params or None,
    )


def scan_node(plan: str) -> tuple[str, int]:
    """The scan node under the sort of ``plan``, and the buffers it read."""
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if "->  Sort" in line)
    for i, line in enumerate(lines[start:], start):
        if "Scan" in line:
            buffers = next(
                (
                    int(m.group(1))
                    for later in lines[i + 1 :]
                    if (m := re.search(r"Buffers: shared hit=(\d+)", later))
                ),
                -1,
            )
            return line, buffers
    raise AssertionError(plan)


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "young"])
async def test_1000_rows_of_384_dimensions_are_searched_by_the_hnsw_index(
    pg_uri: str, analyzed: bool
) -> None:
    """One partition of 1,000 rows of the default model's dimension: the HNSW scan costs
    a few hundred index entries, where a sort reads and compares all 1,000 rows. The
    planner's costs for the sort leave that work out and would sort them, with
    statistics (a sequential scan) or without (a young table: the partition's btree).
    Both states get the HNSW scan, and no sort."""
    async with open_store(pg_uri, f"hnsw-1000-{analyzed}", WIDE) as store:
        partition = secrets.token_bytes(32)
        async with store.pool.connection() as conn:
            await conn.execute(f"ALTER TABLE {store.table} SET (autovacuum_enabled = false)")
            await fill_wide(conn, store.table, "%s", 1000, (partition,))
            if analyzed:
                await conn.execute(f"ANALYZE {store.table}")
            plans = await log_plans(conn, analyze=True)
        query = [0.01 * (i % 7) for i in range(WIDE)]
        for _ in range(8):  # past the plan cache's five custom plans
            plans.clear()
            found = await store.lookup(partition, b"none", query, 0.0)
            assert found.nearest is not None
            (searched,) = [p for p in plans if "<=>" in p]
            assert "Index Scan using" in searched, searched
            assert "_hnsw" in searched, searched
            assert "Sort" not in searched, searched


async def test_small_partitions_are_read_without_their_responses(pg_uri: str) -> None:
    """100 partitions of 20 rows (each on a few heap pages): reading a partition's 20
    rows beats walking the HNSW graph past the other partitions' rows. That scan reads
    ids and vectors from the heap pages alone: its buffers are fewer than its rows (no
    vector nor response fetched out of line), and only the nearest row's response is
    read, by primary key."""
    async with open_store(pg_uri, "narrow-exact", WIDE) as store:
        async with store.pool.connection() as conn:
            await fill_wide(conn, store.table, "int4send(g / 20)", 2000)
            await conn.execute(f"ANALYZE {store.table}")
            plans = await log_plans(conn, analyze=True)
        query = [0.01 * (i % 5) for i in range(WIDE)]
        for p in range(1, 9):
            plans.clear()
            found = await store.lookup(p.to_bytes(4, "big"), b"none", query, 0.0)
            assert found.matches
            assert len(found.matches[0].response) == 19 * 32
            (searched,) = [x for x in plans if "<=>" in x]
            assert "_hnsw" not in searched, searched
            assert "Sort" in searched, searched
            node, buffers = scan_node(searched)
            assert "rows=20" in node, node
            assert 0 < buffers < 20, searched


async def test_skewed_384_dimension_partitions_get_their_own_plans(pg_uri: str) -> None:
    """2,500 rows in one partition beside 500 one-row partitions (384 dimensions): the
    large one is searched by the HNSW index, a one-row one by its btree, each by a
    cached generic plan (the statistics size them both): neither the lookup function
    nor a custom plan, planned on each call."""
    async with open_store(pg_uri, "skewed-wide", WIDE) as store:
        large = b"\x01" * 32
        async with store.pool.connection() as conn:
            await fill_wide(
                conn,
                store.table,
                "CASE WHEN g <= 2500 THEN %s ELSE int4send(g) END",
                3000,
                (large,),
            )
            await conn.execute(f"ANALYZE {store.table}")
            plans = await log_plans(conn)
        query = [0.01 * (i % 3) for i in range(WIDE)]
        for g in range(2501, 2511):
            plans.clear()
            found = await store.lookup(g.to_bytes(4, "big"), b"none", query, 0.0)
            assert found.nearest is not None
            searched = [p for p in plans if "<=>" in p]
            assert searched, plans
            assert all("_hnsw" not in p for p in searched), plans
            assert not [p for p in plans if re.search(r"Function Scan on \S+_lookup\b", p)], plans
        for _ in range(8):  # past the plan cache's five custom plans
            plans.clear()
            assert (await store.lookup(large, b"none", query, 0.0)).nearest is not None
            searched = [p for p in plans if "<=>" in p]
            assert searched, plans
            assert all("_hnsw" in p and "Sort" not in p for p in searched), plans
            assert not [p for p in plans if re.search(r"Function Scan on \S+_lookup\b", p)], plans
        # Generic plans only: no statement of the lookups was planned again for a call.
        async with store.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT sum(custom_plans), sum(generic_plans) FROM pg_prepared_statements"
            )
            custom, generic = await cursor.fetchone() or (None, None)
        assert (custom, generic is not None and generic >= 18) == (0, True)
