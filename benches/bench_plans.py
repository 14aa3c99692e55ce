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

The skewed table (``--skewed BIG:COUNTxSMALL``): one partition of ``BIG`` rows beside
``COUNT`` partitions of ``SMALL`` rows, measured in the small partitions (each query in
the partition of its nearest row) and in the big one; its floor is the bare query under
the same partition filter (``WHERE partition = $2``), on the HNSW index.

``--large`` adds 100,000 rows to the sizes, ``--huge`` 1,000,000 (by hand: see
docs/BENCHMARKS.md for its build time). From ``--bulk-from`` rows on, a table is filled
without its HNSW index, which is then built in one ``CREATE INDEX`` (the schema's own
definition; ``--build-memory``, two parallel workers): much faster than inserting into
the graph row by row. Such a table's line also gives its heap, TOAST and index sizes, and
pgvector's notice when the graph outgrew ``--build-memory``.

    python benches/bench_plans.py --sizes 100,1000,10000 \\
        --kinds real:384,random:384,random:768,random:1536 --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import struct
import tempfile
import time
from dataclasses import dataclass
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
            noise = rng.standard_normal(base.shape, dtype=np.float32) * np.float32(0.02)
            noise[:n] = 0
            base = base + noise
        q = min(queries, n, rows)
        return unit(base), reworded[:q]
    base = rng.standard_normal((rows, dim), dtype=np.float32)
    q = min(queries, rows)
    return unit(base), unit(base[:q] + rng.normal(0, 0.3, (q, dim)) / np.sqrt(dim) * 4)


async def fill(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    stored: np.ndarray,
    body: int,
    partitions: list[bytes] | None = None,
) -> None:
    """``stored`` as the table's rows (``partitions[i]`` each, default ``PARTITION``),
    by binary COPY, with an incompressible response of ``body`` bytes each (as the worst
    stored response)."""
    await conn.execute(f"TRUNCATE {table}")
    rng = np.random.default_rng(len(stored))
    dim = stored.shape[1]
    head = struct.pack(">HH", dim, 0)
    big_endian = stored.astype(">f4")
    async with (
        conn.cursor() as cur,
        cur.copy(
            f"COPY {table} (partition, text_digest, lookup_text, embedding, response) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        await copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        chunk: list[bytes] = []
        for i in range(len(stored)):
            fields = (
                partitions[i] if partitions is not None else PARTITION,
                i.to_bytes(8, "big"),
                f"question {i}".encode(),
                head + big_endian[i].tobytes(),
                rng.bytes(body),
            )
            chunk.append(struct.pack(">h", 5))
            for f in fields:
                chunk.append(struct.pack(">i", len(f)) + f)
            if len(chunk) >= 60_000:
                await copy.write(b"".join(chunk))
                chunk.clear()
        chunk.append(struct.pack(">h", -1))
        await copy.write(b"".join(chunk))


async def fill_bulk(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    stored: np.ndarray,
    body: int,
    memory: str,
    partitions: list[bytes] | None = None,
) -> float:
    """:func:`fill` without the HNSW index, then the index built again from its own
    definition; the build's seconds."""
    cur = await conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = %s::regclass AND pg_get_indexdef(indexrelid) LIKE '%% USING hnsw %%'",
        (table,),
    )
    (name, definition), *_ = await cur.fetchall()
    await conn.execute(f"DROP INDEX {name}")
    await fill(conn, table, stored, body, partitions)
    await conn.execute(f"SET maintenance_work_mem = '{memory}'")
    await conn.execute("SET max_parallel_maintenance_workers = 2")
    # pgvector says when the graph outgrew maintenance_work_mem (and after how many rows).
    notices: list[str] = []

    def keep(d: psycopg.errors.Diagnostic) -> None:
        notices.append(d.message_primary or "")

    conn.add_notice_handler(keep)
    started = time.perf_counter()
    try:
        await conn.execute(definition)
    finally:
        conn.remove_notice_handler(keep)
    build = time.perf_counter() - started
    for notice in notices:
        print(f"  build notice: {notice}", flush=True)
    return build


async def sizes(conn: psycopg.AsyncConnection[Any], table: str) -> str:
    """The table's heap, TOAST and HNSW index sizes, in bytes per row and in all."""
    cur = await conn.execute(
        "SELECT count(*), pg_relation_size(%(t)s::regclass), "
        "pg_table_size(%(t)s::regclass) - pg_relation_size(%(t)s::regclass), "
        "pg_relation_size(%(i)s::regclass), pg_total_relation_size(%(t)s::regclass) "
        f"FROM {table}",
        {"t": table, "i": f"{table[:55]}_hnsw"},
    )
    rows, heap, rest, hnsw, total = (int(x) for x in await cur.fetchone() or ())
    per = max(rows, 1)
    return (
        f"heap {heap / 2**20:.0f} MiB ({heap / per:.0f} B/row), TOAST and maps "
        f"{rest / 2**20:.0f} MiB ({rest / per:.0f} B/row), HNSW {hnsw / 2**20:.0f} MiB "
        f"({hnsw / per:.0f} B/row), all with indexes {total / 2**20:.0f} MiB "
        f"({total / per:.0f} B/row)"
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


@dataclass(frozen=True)
class Case:
    """One measured row: ``partitions[i]`` holds the nearest stored row of
    ``queries[i]``; ``filtered``: the floor filters by partition too (a table of
    several partitions)."""

    label: str
    rows: str
    partitions: list[bytes]
    queries: np.ndarray
    filtered: bool = False


async def measure(
    conn: psycopg.AsyncConnection[Any],
    hnsw_conn: psycopg.AsyncConnection[Any],
    store: PgVectorStore,
    case: Case,
    calls: int,
    force: str | None,
) -> dict[str, Any]:
    where = "WHERE partition = $2 " if case.filtered else ""
    bare = ReadStatement(
        f"SELECT id, response FROM {store.table} {where}ORDER BY embedding <=> $1::vector LIMIT 1",
        [wire.INFERRED_OID, wire.BYTEA_OID] if case.filtered else [wire.INFERRED_OID],
        [wire.load_int8, wire.load_bytea],
    )
    packed = [
        (p, BinaryVector.pack(q.tolist()).data)
        for p, q in zip(case.partitions, case.queries, strict=True)
    ]
    threshold = wire.dump_float8(0.0)
    digest = b"\x00" * 32

    async def lookup(p: bytes, v: bytes) -> list[tuple[Any, ...]]:
        # What PgVectorStore._run_search sends for a top-1 lookup.
        params = [p, digest, v, threshold, wire.dump_int4(1)]
        verdict = force or await store._plans.verdict(conn, None, p)
        if verdict == CUSTOM:
            return await store._lookup_skewed.fetch(conn, params)
        return await store._lookups[verdict, True].fetch(conn, params[:4])

    async def floor(p: bytes, v: bytes) -> list[tuple[Any, ...]]:
        return await bare.fetch(hnsw_conn, [v, p] if case.filtered else [v])

    # Plans: auto_explain on a few calls of each, after the plan cache settled.
    for i in range(8):
        await lookup(*packed[i % len(packed)])
        await floor(*packed[i % len(packed)])
    plans: list[str] = []
    for c in (conn, hnsw_conn):
        await c.execute("LOAD 'auto_explain'")
        await c.execute("SET auto_explain.log_min_duration = 0")
        await c.execute("SET auto_explain.log_analyze = on")
        await c.execute("SET auto_explain.log_buffers = on")
        await c.execute("SET auto_explain.log_nested_statements = on")
        await c.execute("SET client_min_messages = log")
        c.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    await lookup(*packed[1 % len(packed)])
    lookup_plans = [strip(p) for p in plans if "<=>" in p]
    plans.clear()
    await floor(*packed[1 % len(packed)])
    floor_plans = [strip(p) for p in plans if "<=>" in p]
    for c in (conn, hnsw_conn):
        await c.execute("SET auto_explain.log_min_duration = -1")
        await c.execute("SET client_min_messages = notice")
    times: dict[str, list[float]] = {"lookup": [], "floor": []}
    for i in range(calls):
        args = packed[i % len(packed)]
        for name, fn in (
            (("lookup", lookup), ("floor", floor))
            if i % 2
            else (("floor", floor), ("lookup", lookup))
        ):
            t = time.perf_counter()
            await fn(*args)
            times[name].append(time.perf_counter() - t)
    return {
        "lookup_us": statistics.median(times["lookup"]) * 1e6,
        "floor_us": statistics.median(times["floor"]) * 1e6,
        # The 10th percentile: less of the waits for a core on a shared machine.
        "lookup_p10": statistics.quantiles(times["lookup"], n=10)[0] * 1e6,
        "floor_p10": statistics.quantiles(times["floor"], n=10)[0] * 1e6,
        "lookup_plan": plan_kind(lookup_plans[-1]) if lookup_plans else "?",
        "verdict": force
        or await store._plans.verdict(conn, None, case.partitions[1 % len(packed)]),
        "floor_plan": plan_kind(floor_plans[-1]) if floor_plans else "?",
        "plans": lookup_plans[-1:] + floor_plans[-1:],
    }


HEADER = [
    "| vectors | rows | table | lookup plan | floor plan | lookup us p10 / p50 "
    "| floor us p10 / p50 | ratio p10 / p50 |",
    "|---|---|---|---|---|---|---|---|",
]


def parse_skewed(spec: str) -> tuple[int, int, int]:
    """``BIG:COUNTxSMALL`` as (big, count, small)."""
    big, _, rest = spec.partition(":")
    count, _, small = rest.partition("x")
    return int(big), int(count), int(small)


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(14)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    sizes += [100_000] * args.large + [1_000_000] * args.huge
    with tempfile.TemporaryDirectory(prefix="semcache-bench-plans-") as tmp:
        server = EmbeddedPostgres(Path(tmp))
        server.start()
        try:
            uri = server.create_database("bench")
            rows_out = []
            for spec in args.kinds.split(","):
                kind, dim_text = spec.split(":")
                dim = int(dim_text)
                tables: list[tuple[np.ndarray, list[bytes] | None, list[Case]]] = []
                for size in sizes:
                    stored, queries = vectors(kind, dim, size, args.queries, rng)
                    one_partition = [PARTITION] * len(queries)
                    tables.append((stored, None, [Case("", f"{size:,}", one_partition, queries)]))
                if args.skewed:
                    tables.append(skewed_table(kind, dim, args, rng))
                for stored, partitions, cases in tables:
                    for state in args.states.split(","):
                        for result in await one(
                            uri, kind, dim, state, stored, partitions, cases, args
                        ):
                            rows_out.append(result)
                            print(result["line"], flush=True)
        finally:
            server.stop()
    table = [*HEADER, *(r["line"] for r in rows_out)]
    print("\n".join(table))
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n")  # noqa: ASYNC240 (once, at the end)


def skewed_table(
    kind: str, dim: int, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, list[bytes], list[Case]]:
    """The skewed table's rows, their partitions, and its two cases: queries in the
    small partitions, queries in the big one."""
    big, count, small = parse_skewed(args.skewed)
    rows = big + count * small
    stored, queries = vectors(kind, dim, rows, rows, rng)
    # Rows 0..big-1 in the big partition (the queries near them too), the rest in
    # ``count`` partitions of ``small`` consecutive rows.
    partitions = [PARTITION] * big + [
        (1 + (i - big) // small).to_bytes(4, "big") for i in range(big, rows)
    ]
    label = f"{big:,} + {count:,}x{small}"
    n = min(args.queries, big, count * small)
    if len(queries) < rows:  # the fixture's rewordings end: queries near stored rows
        queries = unit(stored + rng.normal(0, 0.3 / np.sqrt(dim), stored.shape))
    # The small partitions' queries, spread over as many partitions as there are queries.
    step = max(1, (count * small) // n)
    small_rows = list(range(big, rows, step))[:n]
    return (
        stored,
        partitions,
        [
            Case(
                "small partition",
                label,
                [partitions[i] for i in small_rows],
                queries[small_rows],
                filtered=True,
            ),
            Case("big partition", label, [PARTITION] * n, queries[:n], filtered=True),
        ],
    )


async def one(
    uri: str,
    kind: str,
    dim: int,
    state: str,
    stored: np.ndarray,
    partitions: list[bytes] | None,
    cases: list[Case],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    from psycopg_pool import AsyncConnectionPool

    model = f"bench-{kind}-{len(stored)}-{state}"
    pool = AsyncConnectionPool(
        uri,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True, "options": connection_options(None)},
    )
    await pool.open()
    results = []
    try:
        store = PgVectorStore(pool, model_id=model, dimension=dim)
        async with pool.connection() as c:
            await c.execute(f"DROP TABLE IF EXISTS {store.table}")
        await store.ensure_schema()
        async with pool.connection() as c:
            # A young table stays young for the run.
            await c.execute(f"ALTER TABLE {store.table} SET (autovacuum_enabled = false)")
            started = time.perf_counter()
            if len(stored) >= args.bulk_from:
                build = await fill_bulk(
                    c, store.table, stored, args.response_bytes, args.build_memory, partitions
                )
                print(
                    f"{kind} {dim}, {len(stored):,} rows: filled and indexed in "
                    f"{time.perf_counter() - started:.0f} s (HNSW build {build:.1f} s, "
                    f"maintenance_work_mem {args.build_memory}); "
                    f"{await sizes(c, store.table)}",
                    flush=True,
                )
            else:
                await fill(c, store.table, stored, args.response_bytes, partitions)
            if state == "analyzed":
                await c.execute(f"VACUUM ANALYZE {store.table}")
        for case in cases:
            conn = await psycopg.AsyncConnection.connect(
                uri, autocommit=True, options=connection_options(None)
            )
            # The floor: the bare query on pgvector's index (the planner would sort small
            # tables).
            hnsw_conn = await psycopg.AsyncConnection.connect(
                uri, autocommit=True, options=connection_options(None) + " -c enable_sort=off"
            )
            try:
                result = await measure(conn, hnsw_conn, store, case, args.calls, args.force)
            finally:
                await conn.close()
                await hnsw_conn.close()
            if args.plans:
                print("\n".join(result["plans"]))
            ratio = result["lookup_us"] / result["floor_us"]
            ratio_p10 = result["lookup_p10"] / result["floor_p10"]
            where = f", {case.label}" if case.label else ""
            result["line"] = (
                f"| {kind} {dim} | {case.rows}{where} | {state} | "
                f"{result['verdict']}: {result['lookup_plan']} | "
                f"{result['floor_plan']} | "
                f"{result['lookup_p10']:.0f} / {result['lookup_us']:.0f} | "
                f"{result['floor_p10']:.0f} / {result['floor_us']:.0f} | "
                f"{ratio_p10:.2f}x / {ratio:.2f}x |"
            )
            results.append(result)
        async with pool.connection() as c:
            await c.execute(f"DROP TABLE {store.table}")
    finally:
        await pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--kinds", default="real:384,random:384")
    parser.add_argument("--states", default="young,analyzed")
    parser.add_argument(
        "--skewed",
        default="5000:1000x5",
        help="the skewed table, BIG:COUNTxSMALL ('' for none)",
    )
    parser.add_argument("--large", action="store_true", help="also 100,000 rows")
    parser.add_argument(
        "--huge", action="store_true", help="also 1,000,000 rows (by hand: tens of minutes)"
    )
    parser.add_argument(
        "--bulk-from",
        type=int,
        default=50_000,
        help="from this many rows on, build the HNSW index after the load",
    )
    parser.add_argument(
        "--build-memory", default="4GB", help="maintenance_work_mem of the index build"
    )
    parser.add_argument("--calls", type=int, default=1000, help="calls of each statement")
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
