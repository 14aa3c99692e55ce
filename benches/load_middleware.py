"""HTTP load benchmark of the middleware: one uvicorn worker on loopback.

Scenarios: ``baseline`` (the same app without the cache), ``exact`` (one stored question
repeated), ``semantic`` (a paraphrase of a stored question, a semantic hit every time),
``miss`` (every request a new question, stored). Each at the given concurrencies, each
run ``--runs`` times; the table reports medians of requests per second, of p50 / p90 /
p99 latency, and of the CPU time the server process and Postgres (all its processes)
spent per request: on a noisy machine, where the throughput of one run may differ from
the next by a third, CPU per request moves much less. The server is pinned to core 0,
this load generator and the embedded Postgres to core 1 (``taskset``), when the machine
has two cores or more.

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams (one
connection per concurrent client), so that the client costs less than the server.

    .venv/bin/python benches/load_middleware.py --rows 1000 --concurrency 1,16,64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psycopg import sql  # noqa: E402

from semanticcache import HashingEmbedder, SemanticCache  # noqa: E402
from semanticcache._devserver import EmbeddedPostgres  # noqa: E402
from semanticcache._key import CacheKey  # noqa: E402
from semanticcache._middleware.record import StoredResponse, encode_record  # noqa: E402
from semanticcache._native import scan_request  # noqa: E402

PATH = "/v1/chat/completions"
STORED = "What is the capital of France?"
PARAPHRASE = "what is the capital of France, please"
MODEL = "load"


def body(text: str) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]}).encode()


def request(port: int, payload: bytes) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def client(
    port: int,
    make: Callable[[], bytes],
    until: float,
    latencies: list[float],
    seen: Counter[bytes],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(make())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            outcome = match = b""
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"x-cache":
                    outcome = value.strip()
                elif lowered == b"x-cache-match":
                    match = value.strip()
            seen[outcome] += 1
            if match:
                seen[outcome + b"/" + match] += 1
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def run_load(
    port: int, make: Callable[[], bytes], concurrency: int, seconds: float
) -> tuple[float, list[float], Counter[bytes]]:
    latencies: list[float] = []
    seen: Counter[bytes] = Counter()
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(port, make, until, latencies, seen) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, seen


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children_of: bool = False) -> float:
    """User + system CPU time of process ``pid`` (or, with ``children_of``, of every
    process whose parent it is: Postgres's backends and workers), from /proc."""

    def of(stat: str) -> tuple[int, float]:
        # After the command's closing parenthesis: state, ppid, ..., utime (14), stime (15).
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK

    if not children_of:
        return of(Path(f"/proc/{pid}/stat").read_text())[1]
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid, seconds = of((entry / "stat").read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile
            if ppid == pid:
                total += seconds
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fast_stack(python: str) -> bool:
    """Whether ``python`` has uvloop and httptools (``uvicorn[standard]``)."""
    probe = subprocess.run([python, "-c", "import uvloop, httptools"], capture_output=True)
    return probe.returncode == 0


def start_server(
    uri: str | None, *, original: str | None = None, rows: int = 0, stack: str = "auto"
) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``load_app`` (``uri`` ``None``: no cache), or ``orig_app`` under
    the ``original`` interpreter (which seeds ``rows`` itself at start-up). ``stack``:
    ``fast`` (uvloop + httptools), ``asyncio`` (asyncio's loop + h11), ``auto`` (fast
    when the interpreter has them)."""
    port = free_port()
    # ROOT for ``benches.load_app``; the caller's PYTHONPATH after it, so that a
    # PYTHONPATH naming another checkout's ``python/`` serves that checkout's code.
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "LOAD_SEED_ROWS": str(rows)}
    env.pop("LOAD_PG_URI", None)
    if uri is not None:
        env["LOAD_PG_URI"] = uri
    cmd = [
        original or sys.executable,
        "-m",
        "uvicorn",
        "benches.orig_app:app" if original else "benches.load_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    python = original or sys.executable
    if stack == "fast" or (stack == "auto" and fast_stack(python)):
        cmd += ["--loop", "uvloop", "--http", "httptools"]
    else:
        cmd += ["--loop", "asyncio", "--http", "h11"]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def key_of(text: str) -> CacheKey:
    """The key the middleware computes for a request asking ``text``."""
    key = CacheKey.from_scan(scan_request(body(text)), route=PATH)
    if key is None:
        raise RuntimeError("no lookup text")
    return key


# Fillers are questions made of common words, so that the stored question is not an
# outlier in the vector space. Near-identical fillers ("filler question <hex>", the
# first version of this benchmark) form one tight cluster that the HNSW graph cannot
# leave: at 100k rows even ef_search 400 did not reach the stored question.
_VOCABULARY = (
    "how what why when where which who does do can should is are the a an to of in for on "
    "with best way learn make use get find start stop buy sell city river country money "
    "phone bank water food health job school car house computer language music movie book "
    "game history science weather travel price time people world life love work company "
    "market energy battery software python java internet email password account number"
)
_WORDS = _VOCABULARY.split()


def filler(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 12))]
    return " ".join(words).capitalize() + "?"


async def seed(uri: str, rows: int) -> None:
    """``rows`` entries in the benchmark's partition: the stored question plus fillers.

    Every ``put`` raises on failure: a seeding that failed open would quietly measure
    misses as hits (or the reverse)."""
    answer = json.dumps(
        {"id": "chatcmpl-load", "object": "chat.completion", "created": 1, "model": MODEL}
    ).encode()
    record = encode_record(
        StoredResponse(200, ((b"content-type", b"application/json"),), answer, False)
    )
    async with SemanticCache(pg_uri=uri, embedder=HashingEmbedder(), threshold=0.9) as cache:
        rng = random.Random(5)
        texts = [STORED] + [filler(rng) for _ in range(rows - 1)]
        for i in range(0, len(texts), 8):
            await asyncio.gather(
                *(cache.put(key_of(t), record, raise_errors=True) for t in texts[i : i + 8])
            )
        # The steady state: autovacuum would gather the table's statistics within a
        # minute or so; until then the planner guesses partition sizes, and a search
        # in this one large partition takes a btree scan and a sort (about 0.5 ms more).
        async with cache.store.pool.connection() as conn:
            await conn.execute(sql.SQL("ANALYZE {t}").format(t=sql.Identifier(cache.table)))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--bare-worker":
        worker_uri, connections, seconds = sys.argv[2:]
        result = asyncio.run(bare_worker(worker_uri, int(connections), float(seconds)))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--scenarios",
        default="baseline,exact,semantic,miss",
        help="any of baseline, exact, semantic, miss, bare (the bare pgvector query)",
    )
    parser.add_argument(
        "--stack",
        choices=("auto", "fast", "asyncio"),
        default="auto",
        help="uvicorn's loop and HTTP parser: fast = uvloop + httptools (default when installed)",
    )
    parser.add_argument(
        "--hot",
        type=int,
        default=0,
        help="SEMANTIC_CACHE_HOT_ENTRIES for the server: exact hits from memory (default off)",
    )
    parser.add_argument(
        "--ef-search",
        type=int,
        help="SEMANTIC_CACHE_PGVECTOR_HNSW_EF_SEARCH for the server (default: pgvector's 40)",
    )
    parser.add_argument(
        "--original",
        help="python of a venv with fastapi-semcache 0.4.6: measure it instead (own database)",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    # The servers (children) read it from the environment; the seeding cache ignores it.
    os.environ["SEMANTIC_CACHE_HOT_ENTRIES"] = str(args.hot)
    if args.ef_search is not None:
        # The seeding cache and the servers (children) read it from the environment.
        os.environ["SEMANTIC_CACHE_PGVECTOR_HNSW_EF_SEARCH"] = str(args.ef_search)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # this process and the Postgres it starts: core 1
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data")
        pg.start()
        try:
            uri = pg.create_database("load")
            if args.original is None:
                asyncio.run(seed(uri, args.rows))
            server_python = args.original or sys.executable
            fast = args.stack == "fast" or (args.stack == "auto" and fast_stack(server_python))
            print(
                f"uvicorn stack: {'uvloop + httptools' if fast else 'asyncio + h11'}; "
                f"ef_search: {args.ef_search or 'pgvector default (40)'}; "
                f"hot entries: {args.hot or 'off'}"
            )
            print(
                "| scenario | rows | concurrency | req/s | p50 ms | p90 ms | p99 ms "
                "| server CPU us/req | Postgres CPU us/req | expected X-Cache |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            seed_rows = args.rows  # the original seeds at its first start only
            postmaster = int((pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            for scenario in args.scenarios.split(","):
                if scenario == "bare":
                    for level in levels:
                        bare_report(uri, args, level)
                    continue
                if scenario == "baseline":
                    proc, port = start_server(None, stack=args.stack)
                else:
                    proc, port = start_server(
                        uri, original=args.original, rows=seed_rows, stack=args.stack
                    )
                    seed_rows = 0
                try:
                    for level in levels:
                        report(scenario, args, level, port, proc.pid, postmaster)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
            if "miss" in args.scenarios.split(",") and args.original is None:
                embed_ms, put_ms = asyncio.run(put_cost(uri))
                print(
                    f"\nembed + insert of a new question, measured alone (p50 of 300, one "
                    f"at a time): embed {embed_ms:.3f} ms, put {put_ms:.2f} ms (embed included)"
                )
        finally:
            pg.stop()


def bare_report(uri: str, args: argparse.Namespace, level: int) -> None:
    """The floor of a semantic hit under load: the bare pgvector top-1 query for the
    paraphrase's vector, from ``level`` psycopg connections in one Python process pinned
    where the server runs (core 0), Postgres on core 1. Queries per second, medians."""
    cmd = [sys.executable, __file__, "--bare-worker", uri, str(level), str(args.seconds)]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    env = dict(os.environ)
    runs = []
    for _ in range(args.runs + 1):  # the first is the warm-up
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        runs.append(json.loads(done.stdout))
    runs = runs[1:]
    med = statistics.median
    print(
        f"| bare query | {args.rows} | {level} | {med(r['qps'] for r in runs):,.0f} "
        f"| {med(r['p50'] for r in runs):.2f} | {med(r['p90'] for r in runs):.2f} "
        f"| {med(r['p99'] for r in runs):.2f} | | | |",
        flush=True,
    )


async def bare_worker(uri: str, level: int, seconds: float) -> dict[str, float]:
    """``SELECT id, response FROM t ORDER BY embedding <=> v LIMIT 1`` in a loop on
    ``level`` connections with the cache's session settings (``ef_search``)."""
    import psycopg

    from semanticcache._storage.pgvector import connection_options, table_name_for

    ef = os.environ.get("SEMANTIC_CACHE_PGVECTOR_HNSW_EF_SEARCH")
    options = connection_options(int(ef) if ef else None)
    embedder = HashingEmbedder()
    table = table_name_for(embedder.model_id, embedder.dimension)
    vector = "[" + ",".join(repr(x) for x in embedder.embed_one(PARAPHRASE)) + "]"
    query = f"SELECT id, response FROM {table} ORDER BY embedding <=> %s::vector LIMIT 1"
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def loop() -> None:
        async with await psycopg.AsyncConnection.connect(
            uri, autocommit=True, options=options
        ) as conn:
            while time.perf_counter() < until:
                started = time.perf_counter()
                cur = await conn.execute(query, (vector,), prepare=True)
                await cur.fetchall()
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(level)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "qps": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5) * 1000,
        "p90": percentile(latencies, 0.9) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


async def put_cost(uri: str, rounds: int = 300) -> tuple[float, float]:
    """p50 of the embedding and of ``put`` (embed + insert) of new questions: what a miss
    must pay anyway, to subtract from the miss latency."""
    embedder = HashingEmbedder()
    record = encode_record(StoredResponse(200, (), b"{}", False))
    embeds: list[float] = []
    puts: list[float] = []
    async with SemanticCache(
        pg_uri=uri, embedder=embedder, threshold=0.9, embedding_memo_size=0
    ) as cache:
        for _ in range(rounds):
            text = f"new question {secrets.token_hex(8)}"
            started = time.perf_counter()
            await embedder.embed([text])
            embeds.append(time.perf_counter() - started)
            started = time.perf_counter()
            await cache.put(key_of(text), record, raise_errors=True)
            puts.append(time.perf_counter() - started)
    return statistics.median(embeds) * 1000, statistics.median(puts) * 1000


def report(
    scenario: str,
    args: argparse.Namespace,
    level: int,
    port: int,
    server_pid: int,
    postmaster_pid: int,
) -> None:
    fixed = {
        "baseline": request(port, body(STORED)),
        "exact": request(port, body(STORED)),
        "semantic": request(port, body(PARAPHRASE)),
    }

    def make() -> bytes:
        if scenario == "miss":
            return request(port, body(f"new question {secrets.token_hex(8)}"))
        return fixed[scenario]

    # X-Cache, with X-Cache-Match where the server sends one (the original does not).
    expected = {"baseline": b"", "exact": b"HIT", "semantic": b"HIT", "miss": b"MISS"}
    if args.original is None:
        expected.update(exact=b"HIT/exact", semantic=b"HIT/semantic")
    # Warm-up: connections, prepared statements, the first lookups.
    asyncio.run(run_load(port, make, level, 0.5))
    rps_runs: list[float] = []
    p50s: list[float] = []
    p90s: list[float] = []
    p99s: list[float] = []
    shares: list[float] = []
    server_cpu: list[float] = []
    pg_cpu: list[float] = []
    for _ in range(args.runs):
        server_before = cpu_seconds(server_pid)
        pg_before = cpu_seconds(postmaster_pid, children_of=True)
        rps, latencies, seen = asyncio.run(run_load(port, make, level, args.seconds))
        requests = max(1, len(latencies))
        server_cpu.append((cpu_seconds(server_pid) - server_before) / requests * 1e6)
        pg_cpu.append((cpu_seconds(postmaster_pid, children_of=True) - pg_before) / requests * 1e6)
        want = expected[scenario]
        share = 1.0 if not want else seen[want] / max(1, len(latencies))
        shares.append(share)
        latencies.sort()
        rps_runs.append(rps)
        p50s.append(percentile(latencies, 0.50) * 1000)
        p90s.append(percentile(latencies, 0.90) * 1000)
        p99s.append(percentile(latencies, 0.99) * 1000)
    med = statistics.median
    print(
        f"| {scenario} | {args.rows} | {level} | {med(rps_runs):,.0f} | {med(p50s):.2f} "
        f"| {med(p90s):.2f} | {med(p99s):.2f} | {med(server_cpu):.0f} | {med(pg_cpu):.0f} "
        f"| {min(shares):.1%} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
