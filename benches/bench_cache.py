"""SemanticCache.get against the floor: one bare psycopg HNSW top-1 query, same table.

Groups per table size:

* ``floor``: hand-written ``ORDER BY embedding <=> $v LIMIT 1``, prepared.
* ``get semantic``, ``get exact``: an embedder that declares ``embeds_cheaply`` (like
  ``HashingEmbedder``): embed, then one statement holding the exact probe and the search.
* ``get semantic, exact-first``, ``get exact, exact-first``: a remote-like embedder
  (``embeds_cheaply = False``, the default): exact probe, and only on a miss the embed
  and the search, two statements.
* ``get exact redis`` (one Redis GET), ``get semantic redis`` (Redis GET miss + embed +
  one statement).

Both embedders are zero-cost table look-ups, so the figures measure the cache, not a
model. Rows are generated on the server (random 64-dimension vectors, one partition: the
floor needs no partition filter to be comparable).

Default: 1,000 rows (also what the test run uses). ``SEMCACHE_BENCH_ROWS=1000,100000``
adds sizes. ``SEMCACHE_BENCH_DATA_DIR=/some/folder`` keeps the tables in an embedded
Postgres of that folder (started if needed, stopped at the end if started here) instead
of the test session's throwaway server: a table that already holds the wanted rows and
its HNSW index is reused, so a 1,000,000-row table is built once, not per run (its
index is built with ef_construction 32, see ``_build_index``).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from tests.servers import RedisServer

from semanticcache import BaseEmbedder, CacheHit, SemanticCache
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._key import lookup_digest

DIM = 64
PARTITION = b"\x01" * 32
ROWS = [int(n) for n in os.environ.get("SEMCACHE_BENCH_ROWS", "1000").split(",") if n.strip()]
DATA_DIR = os.environ.get("SEMCACHE_BENCH_DATA_DIR")
STORED = "row 1"
NEAR = "near row 1"
RESPONSE = b'{"answer": "row 1"}'


class LookupEmbedder(BaseEmbedder):
    """Zero-cost and in process: vectors come from a dict filled by the bench."""

    embeds_cheaply: ClassVar[bool] = True

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.model_id = "bench-lookup"
        self.dimension = DIM
        self.vectors = vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


class RemoteLikeEmbedder(LookupEmbedder):
    """Same vectors, but declared costly: the cache takes the exact-first path, as for
    a hosted model (whose own latency is left out here)."""

    embeds_cheaply: ClassVar[bool] = False


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    rows: int
    cache: SemanticCache
    exact_first_cache: SemanticCache
    redis_cache: SemanticCache
    conn: psycopg.AsyncConnection[tuple[object, ...]]
    query_vector: str
    index_build_seconds: float | None


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(x) for x in vector) + "]"


async def _table_state(
    conn: psycopg.AsyncConnection[tuple[object, ...]], table: str, rows: int
) -> tuple[bool, bool]:
    """Whether ``table`` already holds the bench's rows (with the probe row), and whether
    it has its HNSW index."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s), "
        f"(SELECT count(*) FROM {table}), "
        f"(SELECT count(*) FROM {table} WHERE lookup_text = %s AND text_digest = %s)",
        (table, "%USING hnsw%", STORED, lookup_digest(STORED)),
    )
    row = await cur.fetchone()
    assert row is not None
    indexes, count, probe = row
    return (count, probe) == (rows, 1), indexes == 1


async def _load(conn: psycopg.AsyncConnection[tuple[object, ...]], table: str, rows: int) -> None:
    """Fill ``table`` with ``rows`` random rows (no HNSW index: built afterwards)."""
    await conn.execute(f"DROP INDEX IF EXISTS {table[:55]}_hnsw")
    await conn.execute(f"TRUNCATE {table}")
    await conn.execute(
        f"""
        INSERT INTO {table} (partition, text_digest, lookup_text, embedding, response)
        SELECT %s, int8send(g), 'row ' || g,
               (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIM})
                WHERE g > 0)::vector,
               convert_to('{{"answer": "row ' || g || '"}}', 'UTF8')
        FROM generate_series(1, %s) AS g
        """,
        (PARTITION, rows),
    )
    # The stored row is reachable on the exact path under its text.
    await conn.execute(
        f"UPDATE {table} SET text_digest = %s WHERE lookup_text = %s",
        (lookup_digest(STORED), STORED),
    )


async def _build_index(
    conn: psycopg.AsyncConnection[tuple[object, ...]], table: str, rows: int
) -> float:
    """Build the HNSW index; return how long it took, in seconds."""
    # Enough memory for the whole graph (a 1M-row, 64-dimension graph is about 1 GB):
    # pgvector builds much slower once it spills. Two parallel workers on two shared
    # cores: the build competes with other work for its share of them.
    await conn.execute("SET maintenance_work_mem = '3GB'")
    await conn.execute("SET max_parallel_maintenance_workers = 2")
    # m = 16 everywhere (the graph a query walks); at 1M rows ef_construction is the
    # minimum pgvector allows for m = 16 (2 * m = 32, default 64): the build costs about
    # half, the graph is a little less well connected.
    ef_construction = 32 if rows >= 1_000_000 else 64
    started = time.perf_counter()
    await conn.execute(
        f"CREATE INDEX IF NOT EXISTS {table[:55]}_hnsw ON {table} USING hnsw "
        f"(embedding vector_cosine_ops) WITH (m = 16, ef_construction = {ef_construction})"
    )
    seconds = time.perf_counter() - started
    await conn.execute(f"VACUUM ANALYZE {table}")
    return seconds


async def _prepare(uri: str, rows: int, redis_url: str) -> Setup:
    vectors: dict[str, list[float]] = {}
    cache = SemanticCache(
        pg_uri=uri, embedder=LookupEmbedder(vectors), threshold=0.9, pool_max_size=2
    )
    await cache.open()
    table = cache.table
    build_seconds: float | None = None
    try:
        async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
            loaded, indexed = await _table_state(conn, table, rows)
            if not loaded:
                await _load(conn, table, rows)
            if not (loaded and indexed):
                build_seconds = await _build_index(conn, table, rows)
                print(
                    f"\nbench_cache: {rows} rows, HNSW index built in {build_seconds:.1f} s",
                    file=sys.stderr,
                )
            cur = await conn.execute(
                f"SELECT embedding::text FROM {table} WHERE lookup_text = %s", (STORED,)
            )
            row = await cur.fetchone()
    except BaseException:
        await cache.close()  # a failed or cancelled build leaves no pool behind
        raise
    assert row is not None
    stored = [float(x) for x in str(row[0]).strip("[]").split(",")]
    rng = random.Random(1)
    near = [x + rng.gauss(0.0, 0.01) for x in stored]
    vectors[STORED] = stored
    vectors[NEAR] = near
    floor_conn = await psycopg.AsyncConnection.connect(uri, autocommit=True)
    exact_first_cache = SemanticCache(
        pg_uri=uri, embedder=RemoteLikeEmbedder(vectors), threshold=0.9, pool_max_size=2
    )
    redis_cache = SemanticCache(
        pg_uri=uri,
        redis_uri=redis_url,
        embedder=LookupEmbedder(vectors),
        threshold=0.9,
        pool_max_size=2,
    )
    # Same row, same response: the put also writes the blob to Redis.
    await redis_cache.put(STORED, RESPONSE, partition=PARTITION)
    return Setup(
        loop=asyncio.get_running_loop(),
        rows=rows,
        cache=cache,
        exact_first_cache=exact_first_cache,
        redis_cache=redis_cache,
        conn=floor_conn,
        query_vector=_literal(near),
        index_build_seconds=build_seconds,
    )


@pytest.fixture(scope="module")
def bench_pg(pg_server: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """The test session's Postgres, or the persistent one of ``SEMCACHE_BENCH_DATA_DIR``."""
    if DATA_DIR is None:
        yield pg_server
        return
    server = EmbeddedPostgres(Path(DATA_DIR))
    server.start()
    try:
        yield server
    finally:
        server.stop()  # only if this run started it


@pytest.fixture(scope="module", params=ROWS, ids=lambda n: f"{n}rows")
def setup(
    bench_pg: EmbeddedPostgres, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[Setup]:
    rows: int = request.param
    name = f"bench_cache_{rows}"
    uri = bench_pg.create_database(name)
    loop = asyncio.new_event_loop()
    try:
        s = loop.run_until_complete(_prepare(uri, rows, redis_server.url))
        yield s
        loop.run_until_complete(s.conn.close())
        for cache in (s.cache, s.exact_first_cache, s.redis_cache):
            loop.run_until_complete(cache.close())
    finally:
        loop.close()
        if DATA_DIR is None:
            bench_pg.drop_database(name)


async def _floor(s: Setup) -> tuple[object, ...] | None:
    cur = await s.conn.execute(
        f"SELECT id, response FROM {s.cache.table} ORDER BY embedding <=> %s::vector LIMIT 1",
        (s.query_vector,),
        prepare=True,
    )
    return await cur.fetchone()


def _get(benchmark: BenchmarkFixture, s: Setup, cache: SemanticCache, text: str) -> CacheHit:
    benchmark.group = f"cache get, {s.rows} rows"
    if s.index_build_seconds is not None:
        benchmark.extra_info["index_build_seconds"] = round(s.index_build_seconds, 1)

    def run() -> CacheHit | None:
        return s.loop.run_until_complete(cache.get(text, partition=PARTITION))

    hit: CacheHit | None = benchmark(run)
    assert hit is not None
    assert hit.response == RESPONSE
    return hit


def test_floor_bare_hnsw_top1(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"
    row = benchmark(lambda: setup.loop.run_until_complete(_floor(setup)))
    assert row is not None
    assert bytes(row[1]) == RESPONSE


def test_get_semantic_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.cache, NEAR).match == "semantic"


def test_get_semantic_hit_exact_first(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.exact_first_cache, NEAR).match == "semantic"


def test_get_exact_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.cache, STORED).match == "exact"


def test_get_exact_hit_exact_first(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.exact_first_cache, STORED).match == "exact"


def test_get_exact_hit_redis(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.redis_cache, STORED).match == "exact"


def test_get_semantic_hit_redis(benchmark: BenchmarkFixture, setup: Setup) -> None:
    assert _get(benchmark, setup, setup.redis_cache, NEAR).match == "semantic"
