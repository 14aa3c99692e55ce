"""SemanticCache.get against the floor: one bare psycopg HNSW top-1 query, same table.

Groups per table size: ``floor`` (hand-written ``ORDER BY embedding <=> $v LIMIT 1``),
``get semantic`` (exact probe miss + embed + two-stage search, one round trip each),
``get exact`` (one index probe, no embedding) and, with the Redis tier, ``get exact
redis`` (one Redis GET) and ``get semantic redis`` (Redis GET miss + embed + search).
The embedder is a zero-cost table look-up, so the figures measure the cache, not a
model. Rows are generated on the server (random vectors, one partition: the floor needs
no partition filter to be comparable).

Default: 1,000 rows (also what the test run uses). ``SEMCACHE_BENCH_ROWS=1000,100000``
adds sizes (100k rows take a minute or two to index on a small machine).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from tests.servers import RedisServer

from semanticcache import BaseEmbedder, CacheHit, SemanticCache
from semanticcache.key import lookup_digest
from semanticcache.storage.embedded import EmbeddedPostgres

DIM = 64
PARTITION = b"\x01" * 32
ROWS = [int(n) for n in os.environ.get("SEMCACHE_BENCH_ROWS", "1000").split(",") if n.strip()]


class LookupEmbedder(BaseEmbedder):
    """Zero-cost: vectors come from a dict filled by the bench."""

    def __init__(self) -> None:
        self.model_id = "bench-lookup"
        self.dimension = DIM
        self.vectors: dict[str, list[float]] = {}

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    rows: int
    cache: SemanticCache
    redis_cache: SemanticCache
    conn: psycopg.AsyncConnection[tuple[object, ...]]
    query_vector: str
    stored_text: str
    near_text: str


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(x) for x in vector) + "]"


async def _prepare(uri: str, rows: int, redis_url: str) -> Setup:
    embedder = LookupEmbedder()
    cache = SemanticCache(pg_uri=uri, embedder=embedder, threshold=0.9, pool_max_size=2)
    await cache.open()
    table = cache.table
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute(f"DROP INDEX IF EXISTS {table[:55]}_hnsw")
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
        await conn.execute(
            f"CREATE INDEX {table[:55]}_hnsw ON {table} USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        await conn.execute(f"VACUUM ANALYZE {table}")
        cur = await conn.execute(f"SELECT embedding::text FROM {table} WHERE lookup_text = 'row 1'")
        row = await cur.fetchone()
    assert row is not None
    stored = [float(x) for x in str(row[0]).strip("[]").split(",")]
    rng = random.Random(1)
    near = [x + rng.gauss(0.0, 0.01) for x in stored]
    # The stored row is reachable on the exact path under its text.
    embedder.vectors["row 1"] = stored
    embedder.vectors["near row 1"] = near
    async with cache.store.pool.connection() as conn:
        await conn.execute(
            f"UPDATE {table} SET text_digest = %s WHERE lookup_text = 'row 1'",
            (lookup_digest("row 1"),),
        )
    floor_conn = await psycopg.AsyncConnection.connect(uri, autocommit=True)
    redis_cache = SemanticCache(
        pg_uri=uri, redis_uri=redis_url, embedder=embedder, threshold=0.9, pool_max_size=2
    )
    # Same row, same response: the put also writes the blob to Redis.
    await redis_cache.put("row 1", b'{"answer": "row 1"}', partition=PARTITION)
    return Setup(
        loop=asyncio.get_running_loop(),
        rows=rows,
        cache=cache,
        redis_cache=redis_cache,
        conn=floor_conn,
        query_vector=_literal(near),
        stored_text="row 1",
        near_text="near row 1",
    )


@pytest.fixture(scope="module", params=ROWS, ids=lambda n: f"{n}rows")
def setup(
    pg_server: EmbeddedPostgres, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[Setup]:
    rows: int = request.param
    name = f"bench_cache_{rows}"
    uri = pg_server.create_database(name)
    loop = asyncio.new_event_loop()
    try:
        s = loop.run_until_complete(_prepare(uri, rows, redis_server.url))
        yield s
        loop.run_until_complete(s.conn.close())
        loop.run_until_complete(s.cache.close())
        loop.run_until_complete(s.redis_cache.close())
    finally:
        loop.close()
        pg_server.drop_database(name)


async def _floor(s: Setup) -> tuple[object, ...] | None:
    cur = await s.conn.execute(
        f"SELECT id, response FROM {s.cache.table} ORDER BY embedding <=> %s::vector LIMIT 1",
        (s.query_vector,),
    )
    return await cur.fetchone()


def test_floor_bare_hnsw_top1(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"
    row = benchmark(lambda: setup.loop.run_until_complete(_floor(setup)))
    assert row is not None
    assert bytes(row[1]) == b'{"answer": "row 1"}'


def test_get_semantic_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"

    def run() -> CacheHit | None:
        return setup.loop.run_until_complete(setup.cache.get(setup.near_text, partition=PARTITION))

    hit = benchmark(run)
    assert hit is not None
    assert hit.match == "semantic"
    assert hit.response == b'{"answer": "row 1"}'


def test_get_exact_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"

    def run() -> CacheHit | None:
        return setup.loop.run_until_complete(
            setup.cache.get(setup.stored_text, partition=PARTITION)
        )

    hit = benchmark(run)
    assert hit is not None
    assert hit.match == "exact"


def test_get_exact_hit_redis(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"

    def run() -> CacheHit | None:
        return setup.loop.run_until_complete(
            setup.redis_cache.get(setup.stored_text, partition=PARTITION)
        )

    hit = benchmark(run)
    assert hit is not None
    assert hit.match == "exact"
    assert hit.response == b'{"answer": "row 1"}'


def test_get_semantic_hit_redis(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = f"cache get, {setup.rows} rows"

    def run() -> CacheHit | None:
        return setup.loop.run_until_complete(
            setup.redis_cache.get(setup.near_text, partition=PARTITION)
        )

    hit = benchmark(run)
    assert hit is not None
    assert hit.match == "semantic"
