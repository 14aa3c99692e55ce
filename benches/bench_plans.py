"""The lookup statement against the bare HNSW top-1 query, statement by statement.

For each vector kind, table size and table state (young: no planner statistics yet;
analyzed), one cache table is filled (all rows in one partition, a response of
``--response-bytes`` each, as stored responses are), then the lookup statement the store
runs for a semantic hit and the bare query
``SELECT id, response FROM t ORDER BY embedding <=> $1 LIMIT 1`` are timed on one
connection, interleaved, each over many distinct query vectors (never one repeated).
Also reported: each one's plan (index scan or sort) from auto_explain. Vector kinds:
``real`` (local-model embeddings of generated questions, benches/data/questions_384.npy,
queried with their rewordings), ``random`` (the adversarial case) at any dimension.

    python benches/bench_plans.py --sizes 100,1000,10000 \\
        --kinds real:384,random:384,random:768,random:1536 --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from semanticcache._devserver import EmbeddedPostgres
from semanticcache._storage import wire
from semanticcache._storage.pgvector import (
    CUSTOM,
    BinaryVector,
    PgVectorStore,
    connection_options,
)
from semanticcache._storage.wire import ReadStatement

FIXTURE = Path(__file__).parent / "data" / "questions_384.npy"
PARTITION = b"\x07" * 32


def unit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    out: np.ndarray = a / np.linalg.norm(a, axis=1, keepdims=True)
    return out


def vectors(
    kind: str, dim: int, rows: int, queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(stored rows, query vectors): each query near one stored row (a semantic hit)."""
    if kind == "real":
        stored, reworded = (unit(x) for x in np.load(FIXTURE))
        n = len(stored)
        # Beyond the fixture, rows are its vectors with a little noise (distinct rows
        # of the same structure).
        idx = np.arange(rows) % n
        base = stored[idx]
        if rows > n:
            base = (
                base
                + (idx >= 0)[:, None]
                * rng.normal(0, 0.02, base.shape)
                * (np.arange(rows) >= n)[:, None]
            )
        q = min(queries, n, rows)
        return unit(base), reworded[:q]
    base = rng.normal(size=(rows, dim)).astype(np.float32)
    q = min(queries, rows)
    return unit(base), unit(base[:q] + rng.normal(0, 0.3, (q, dim)) / np.sqrt(dim) * 4)


async def fill(
    conn: psycopg.AsyncConnection[Any], table: str, stored: np.ndarray, body: int
) -> None:
    await conn.execute(f"TRUNCATE {table}")
    rng = np.random.default_rng(len(stored))
    async with (
        conn.cursor() as cur,
        cur.copy(
            f"COPY {table} (partition, text_digest, lookup_text, embedding, response) FROM STDIN"
        ) as copy,
    ):
        for i, v in enumerate(stored):
            await copy.write_row(
                (
                    PARTITION,
                    i.to_bytes(8, "big"),
                    f"question {i}",
                    "[" + ",".join(f"{x:.6g}" for x in v) + "]",
                    rng.bytes(body),
                )  # incompressible, as the worst stored response
            )


def strip(plan: str) -> str:
    """The plan without its query text and vector literals."""
    lines = [line for line in plan.splitlines() if not line.startswith("Query ")]
    return re.sub(r"'\[[^']*\]'", "'[...]'", "\n".join(lines))


def plan_kind(plan: str) -> str:
    if "_hnsw" in plan:
        return "hnsw"
    if "Seq Scan" in plan:
        return "seq+sort"
    if "Bitmap" in plan:
        return "bitmap+sort"
    if "Index Scan" in plan:
        return "btree+sort"
    return "?"


async def measure(
    conn: psycopg.AsyncConnection[Any],
    hnsw_conn: psycopg.AsyncConnection[Any],
    store: PgVectorStore,
    queries: np.ndarray,
    calls: int,
    force: str | None,
) -> dict[str, Any]:
    bare = ReadStatement(
        f"SELECT id, response FROM {store.table} ORDER BY embedding <=> $1::vector LIMIT 1",
        [wire.INFERRED_OID],
        [wire.load_int8, wire.load_bytea],
    )
    packed = [BinaryVector.pack(q.tolist()).data for q in queries]
    threshold = wire.dump_float8(0.0)
    digest = b"\x00" * 32

    async def lookup(v: bytes) -> list[tuple[Any, ...]]:
        # What PgVectorStore._run_search sends for a top-1 lookup.
        params = [PARTITION, digest, v, threshold, wire.dump_int4(1)]
        verdict = force or await store._plans.verdict(conn)
        if verdict == CUSTOM:
            return await store._lookup_skewed.fetch(conn, params)
        return await store._lookups[verdict, True].fetch(conn, params[:4])

    async def floor(v: bytes) -> list[tuple[Any, ...]]:
        return await bare.fetch(hnsw_conn, [v])

    # Plans: auto_explain on a few calls of each, after the plan cache settled.
    for i in range(8):
        await lookup(packed[i % len(packed)])
        await floor(packed[i % len(packed)])
    plans: list[str] = []
    for c in (conn, hnsw_conn):
        await c.execute("LOAD 'auto_explain'")
        await c.execute("SET auto_explain.log_min_duration = 0")
        await c.execute("SET auto_explain.log_analyze = on")
        await c.execute("SET auto_explain.log_buffers = on")
        await c.execute("SET auto_explain.log_nested_statements = on")
        await c.execute("SET client_min_messages = log")
        c.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    await lookup(packed[1])
    lookup_plans = [strip(p) for p in plans if "<=>" in p]
    plans.clear()
    await floor(packed[1])
    floor_plans = [strip(p) for p in plans if "<=>" in p]
    for c in (conn, hnsw_conn):
        await c.execute("SET auto_explain.log_min_duration = -1")
        await c.execute("SET client_min_messages = notice")
    times: dict[str, list[float]] = {"lookup": [], "floor": []}
    for i in range(calls):
        v = packed[i % len(packed)]
        for name, fn in (
            (("lookup", lookup), ("floor", floor))
            if i % 2
            else (("floor", floor), ("lookup", lookup))
        ):
            t = time.perf_counter()
            await fn(v)
            times[name].append(time.perf_counter() - t)
    return {
        "lookup_us": statistics.median(times["lookup"]) * 1e6,
        "floor_us": statistics.median(times["floor"]) * 1e6,
        # The 10th percentile: less of the waits for a core on a shared machine.
        "lookup_p10": statistics.quantiles(times["lookup"], n=10)[0] * 1e6,
        "floor_p10": statistics.quantiles(times["floor"], n=10)[0] * 1e6,
        "lookup_plan": plan_kind(lookup_plans[-1]) if lookup_plans else "?",
        "verdict": force or await store._plans.verdict(conn),
        "floor_plan": plan_kind(floor_plans[-1]) if floor_plans else "?",
        "plans": lookup_plans[-1:] + floor_plans[-1:],
    }


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(14)
    with tempfile.TemporaryDirectory(prefix="semcache-bench-plans-") as tmp:
        server = EmbeddedPostgres(Path(tmp))
        server.start()
        try:
            uri = server.create_database("bench")
            rows_out = []
            for spec in args.kinds.split(","):
                kind, dim_text = spec.split(":")
                dim = int(dim_text)
                for size in (int(s) for s in args.sizes.split(",")):
                    stored, queries = vectors(kind, dim, size, args.queries, rng)
                    for state in args.states.split(","):
                        rows_out.append(
                            await one(uri, kind, dim, size, state, stored, queries, args)
                        )
                        print(rows_out[-1]["line"], flush=True)
        finally:
            server.stop()
    table = [
        "| vectors | rows | table | lookup plan | floor plan | lookup us p10 / p50 "
        "| floor us p10 / p50 | ratio p10 / p50 |",
        "|---|---|---|---|---|---|---|---|",
        *(r["line"] for r in rows_out),
    ]
    print("\n".join(table))
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n")  # noqa: ASYNC240 (once, at the end)


async def one(
    uri: str,
    kind: str,
    dim: int,
    size: int,
    state: str,
    stored: np.ndarray,
    queries: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from psycopg_pool import AsyncConnectionPool

    model = f"bench-{kind}-{size}-{state}"
    pool = AsyncConnectionPool(
        uri,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True, "options": connection_options(None)},
    )
    await pool.open()
    try:
        store = PgVectorStore(pool, model_id=model, dimension=dim)
        async with pool.connection() as c:
            await c.execute(f"DROP TABLE IF EXISTS {store.table}")
        await store.ensure_schema()
        async with pool.connection() as c:
            # A young table stays young for the run.
            await c.execute(f"ALTER TABLE {store.table} SET (autovacuum_enabled = false)")
            await fill(c, store.table, stored, args.response_bytes)
            if state == "analyzed":
                await c.execute(f"VACUUM ANALYZE {store.table}")
        conn = await psycopg.AsyncConnection.connect(
            uri, autocommit=True, options=connection_options(None)
        )
        # The floor: the bare query on pgvector's index (the planner would sort small
        # tables).
        hnsw_conn = await psycopg.AsyncConnection.connect(
            uri, autocommit=True, options=connection_options(None) + " -c enable_sort=off"
        )
        try:
            result = await measure(conn, hnsw_conn, store, queries, args.calls, args.force)
        finally:
            await conn.close()
            await hnsw_conn.close()
        if args.plans:
            print("\n".join(result["plans"]))
        async with pool.connection() as c:
            await c.execute(f"DROP TABLE {store.table}")
    finally:
        await pool.close()
    ratio = result["lookup_us"] / result["floor_us"]
    ratio_p10 = result["lookup_p10"] / result["floor_p10"]
    result["line"] = (
        f"| {kind} {dim} | {size:,} | {state} | {result['verdict']}: {result['lookup_plan']} | "
        f"{result['floor_plan']} | {result['lookup_p10']:.0f} / {result['lookup_us']:.0f} | "
        f"{result['floor_p10']:.0f} / {result['floor_us']:.0f} | "
        f"{ratio_p10:.2f}x / {ratio:.2f}x |"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--kinds", default="real:384,random:384,random:768,random:1536")
    parser.add_argument("--states", default="young,analyzed")
    parser.add_argument("--calls", type=int, default=2000, help="calls of each statement")
    parser.add_argument("--queries", type=int, default=1000, help="distinct query vectors")
    parser.add_argument("--response-bytes", type=int, default=1000)
    parser.add_argument("--plans", action="store_true", help="print the plans")
    parser.add_argument(
        "--force", choices=["custom", "index", "exact"], help="this plan, not the policy's"
    )
    parser.add_argument("--out", help="also write the table to this file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
