"""HTTP load benchmark of the middleware: one uvicorn worker on loopback.

Scenarios: ``baseline`` (the same app without the cache), ``exact`` (stored questions
asked again), ``semantic`` (rewordings of stored questions, a semantic hit every time),
``miss`` (every request a new question, stored), ``bare`` (the bare pgvector top-1 query
from psycopg connections, no HTTP) and ``bare-http`` (the semantic scenario's requests
answered by that query in a hand-written app on the same uvicorn stack,
``benches/bare_http_app.py``: the floor of a semantic hit over HTTP). Two workloads:
``--embedder hashing`` (microseconds, 256 dimensions; one stored question and one
paraphrase of it, repeated) and ``--embedder local`` (the default local model, 384
dimensions; ``--questions`` generated questions stored and as many distinct rewordings
of them cycled, each checked to be a semantic hit on its own question before the load).
Each at the given concurrencies, each run ``--runs`` times; the table reports medians of
requests per second, of p50 / p90 / p99 latency, and of the CPU time the server process
and Postgres (all its processes) spent per request: on a noisy machine, where the
throughput of one run may differ from the next by a third, CPU per request moves much
less. The server is pinned to core 0, this load generator and the embedded Postgres to
core 1 (``taskset``), when the machine has two cores or more.

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams (one
connection per concurrent client), so that the client costs less than the server.

The plan guard (``benches/plan_guard.py``) fails the run (exit status 3, the plan found
on stderr) when a search runs another plan than the intended one (the plan policy's
rule for the one partition's rows: the HNSW scan from 300): the store's search is
checked before and after the load, and a sample of the plans the server's own sessions
ran (``--plan-sample``) after each scenario.

    .venv/bin/python benches/load_middleware.py --rows 1000 --concurrency 1,16,64
    .venv/bin/python benches/load_middleware.py --embedder local --rows 1000 \
        --scenarios baseline,semantic,miss --concurrency 1,16
    .venv/bin/python benches/load_middleware.py --scenarios exact,semantic \
        --concurrency 64 --pgbouncer

With ``--pgbouncer``, each cache scenario runs a second time with the server connected
through Debian's ``pgbouncer`` in transaction mode (``SEMANTIC_CACHE_PG_POOLER=transaction``,
as many server connections as the cache's pool, no reset query between transactions:
PgBouncer's defaults), and the ratio of the two throughputs is printed. PgBouncer runs
on core 1 with Postgres; its CPU is not in the Postgres column.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from tests.servers import PgBouncer, find_pgbouncer  # noqa: E402

from benches.load_app import make_cache, make_embedder  # noqa: E402
from benches.plan_guard import (  # noqa: E402
    EXACT,
    PlanGuardError,
    SearchPlan,
    check_search_plan,
    enforce,
    intended_plan,
    logged_plans,
    sample_plans,
)
from semanticcache import CacheSettings, SemanticCache  # noqa: E402
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
    uri: str | None,
    *,
    original: str | None = None,
    rows: int = 0,
    stack: str = "auto",
    pooler: str | None = None,
    env: Mapping[str, str] | None = None,
    app: str = "benches.load_app:app",
) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``load_app`` (``uri`` ``None``: no cache), or ``orig_app`` under
    the ``original`` interpreter (which seeds ``rows`` itself at start-up). ``stack``:
    ``fast`` (uvloop + httptools), ``asyncio`` (asyncio's loop + h11), ``auto`` (fast
    when the interpreter has them). ``pooler``: the cache's ``SEMANTIC_CACHE_PG_POOLER``;
    ``env``: more of the server's environment; ``app``: the ASGI app uvicorn serves."""
    port = free_port()
    # ROOT for ``benches.load_app``; the caller's PYTHONPATH after it, so that a
    # PYTHONPATH naming another checkout's ``python/`` serves that checkout's code.
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    environ = {**os.environ, **(env or {}), "PYTHONPATH": pythonpath, "LOAD_SEED_ROWS": str(rows)}
    environ.pop("LOAD_PG_URI", None)
    if uri is not None:
        environ["LOAD_PG_URI"] = uri
    if pooler is not None:
        environ["SEMANTIC_CACHE_PG_POOLER"] = pooler
    cmd = [
        original or sys.executable,
        "-m",
        "uvicorn",
        "benches.orig_app:app" if original else app,
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
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environ)
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


def answer(i: int) -> bytes:
    """The stored record of the ``i``-th seeded question (its id names it)."""
    body = {"id": f"chatcmpl-load-{i}", "object": "chat.completion", "created": 1, "model": MODEL}
    return encode_record(
        StoredResponse(
            200, ((b"content-type", b"application/json"),), json.dumps(body).encode(), False
        )
    )


@dataclass
class Workload:
    """The questions of a run. ``stored`` are seeded (``answer(i)`` each); the
    ``semantic`` scenario cycles ``asked`` (``asked[i]`` rewords ``stored[i]``), the
    ``exact`` one cycles ``stored[: len(asked)]``; each miss is a new question."""

    embedder: str
    stored: list[str]
    asked: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def new_question(self) -> str:
        if self.embedder == "hashing":
            return f"new question {secrets.token_hex(8)}"
        # Random strings of a fixed prefix lie near each other in a real model's space
        # (each new one would be a semantic hit on the last); common words do not.
        return f"{filler(self.rng)} {self.rng.randrange(10**6)}"

    def maker(self, scenario: str, port: int) -> Callable[[], bytes]:
        """Each next request of ``scenario``."""
        if scenario == "miss":
            return lambda: request(port, body(self.new_question()))
        texts = self.asked if scenario == "semantic" else self.stored[: len(self.asked)]
        payloads = itertools.cycle([request(port, body(t)) for t in texts])
        return lambda: next(payloads)


def build_workload(embedder: str, rows: int, questions: int = 1000) -> Workload:
    """``hashing``: the stored question and its paraphrase, fillers beside; ``local``:
    ``questions`` generated questions (``benches/make_questions.py``) and their
    rewordings, fillers beside up to ``rows``."""
    rng = random.Random(5)
    if embedder == "hashing":
        return Workload(embedder, [STORED] + [filler(rng) for _ in range(rows - 1)], [PARAPHRASE])
    from benches.make_questions import pairs

    pairs_ = pairs(min(questions, rows))
    if len(pairs_) < min(questions, rows):
        raise SystemExit(f"--questions: at most {len(pairs_)} distinct questions")
    stored = [q for q, _ in pairs_]
    return Workload(
        embedder,
        stored + [filler(rng) for _ in range(rows - len(stored))],
        [r for _, r in pairs_],
    )


async def seed(uri: str, workload: Workload) -> None:
    """The workload's stored questions in the benchmark's partition (one partition),
    then ``ANALYZE``; with a real model, ``workload.asked`` keeps only the rewordings
    served as a semantic hit on their own question.

    Every ``put`` raises on failure: a seeding that failed open would quietly measure
    misses as hits (or the reverse)."""
    texts = workload.stored
    async with make_cache(uri) as cache:
        for i in range(0, len(texts), 8):
            await asyncio.gather(
                *(
                    cache.put(key_of(t), answer(j), raise_errors=True)
                    for j, t in enumerate(texts[i : i + 8], i)
                )
            )
        # The steady state: autovacuum would gather the table's statistics within a
        # minute or so (the store's first search would too).
        async with cache.store.pool.connection() as conn:
            await conn.execute(sql.SQL("ANALYZE {t}").format(t=sql.Identifier(cache.table)))
        if workload.embedder != "hashing":
            kept = []
            for i, text in enumerate(workload.asked):
                hit = await cache.get(key_of(text))
                if hit is not None and hit.match == "semantic" and hit.response == answer(i):
                    kept.append(text)
            print(f"semantic questions: {len(kept)} of {len(workload.asked)} rewordings are hits")
            if not kept:
                raise SystemExit("no rewording is a semantic hit: lower --threshold")
            workload.asked = kept


@dataclass
class Guard:
    """The plan guard of one run: what the search of the benchmark's partition must
    run (``expected``, or ``auto``: the plan policy's rule for the rows it holds at each
    check, since misses add rows), and where the server's sampled plans are read from."""

    uri: str
    workload: Workload
    expected: str
    log_file: Path
    table: str = ""
    offset: int = 0
    last: str = ""
    seen: list[str] = field(default_factory=list)

    def intended(self) -> str:
        if self.expected != "auto":
            return self.expected
        with psycopg.connect(self.uri, autocommit=True) as conn:
            query = sql.SQL("SELECT count(*) FROM {t}").format(t=sql.Identifier(self.table))
            row = conn.execute(query).fetchone()
        rows = int(row[0]) if row is not None else 0
        return intended_plan(rows, rows) if rows else EXACT  # one partition

    async def check_store(self, when: str) -> None:
        """The store's own search, as the served cache runs it (``PlanGuardError``)."""
        embedder = make_embedder(self.workload.embedder)
        try:
            cache = make_cache(self.uri, embedder)
            self.table = cache.table
            settings = cache.settings
            vectors = await embedder.embed(self.workload.asked[:8])
        finally:
            close = getattr(embedder, "close", None)
            if close is not None:
                close()  # the local model's worker thread
        self.last = self.intended()
        plans = await check_search_plan(
            self.uri,
            table=self.table,
            dimension=embedder.dimension,
            partition=key_of(self.workload.asked[0]).partition,
            vectors=vectors,
            expected=self.last,
            k=settings.top_k_candidates,
            threshold=settings.threshold,
            ef_search=settings.pgvector_hnsw_ef_search,
        )
        self.seen.append(f"{when}: {len(plans)} searches of the store, all {self.last}")

    def start_sampling(self, rate: float) -> None:
        if rate > 0:
            sample_plans(self.uri, rate)
        self.offset = self.log_file.stat().st_size

    def check_sampled(self, scenario: str) -> None:
        """The search plans the server's sessions logged since the last check: the
        intended plan at the scenario's start or at its end."""
        plans: list[SearchPlan]
        plans, self.offset = logged_plans(self.log_file, self.offset, self.table)
        allowed = {self.last, self.intended()}
        if plans:
            enforce(plans, allowed, f"the {scenario} scenario's sampled searches")
        kinds = ", ".join(sorted({p.kind for p in plans}))
        self.seen.append(f"{scenario}: {len(plans)} sampled searches, {kinds or 'none'}")
        self.last = self.intended()


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--bare-worker":
        worker_uri, connections, seconds, table, vectors = sys.argv[2:]
        result = asyncio.run(
            bare_worker(worker_uri, int(connections), float(seconds), table, Path(vectors))
        )
        print(json.dumps(result))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--put-worker":
        workload = Workload(os.environ.get("LOAD_EMBEDDER", "hashing"), [], [])
        print(json.dumps(asyncio.run(put_cost(sys.argv[2], workload))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--scenarios",
        default="baseline,exact,semantic,miss",
        help="any of baseline, exact, semantic, miss, bare (the bare pgvector query), "
        "bare-http (that query answering the semantic requests in an app of its own: "
        "benches/bare_http_app.py)",
    )
    parser.add_argument(
        "--embedder",
        choices=("hashing", "local"),
        default="hashing",
        help="hashing: one question and one paraphrase; local: the default local model "
        "(384 dimensions) and --questions distinct rewordings",
    )
    parser.add_argument(
        "--questions",
        type=int,
        default=1000,
        help="with --embedder local: distinct stored questions and rewordings (at most --rows)",
    )
    parser.add_argument("--threshold", type=float, default=0.9, help="the cache's threshold")
    parser.add_argument(
        "--memo",
        type=int,
        help="the server's embedding memo size (default: the cache's); 0 embeds every request",
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
        "--pgbouncer",
        action="store_true",
        help="run each cache scenario again through Debian's pgbouncer (transaction mode) "
        "and print the throughput ratio",
    )
    parser.add_argument(
        "--original",
        help="python of a venv with fastapi-semcache 0.4.6: measure it instead (own database)",
    )
    parser.add_argument(
        "--expect-plan",
        choices=("auto", "hnsw", "exact"),
        default="auto",
        help="the search plan the guard requires (auto: the plan policy's rule for the "
        "partition's rows, the HNSW scan from 300)",
    )
    parser.add_argument(
        "--plan-sample",
        type=float,
        default=0.02,
        help="share of the server's statements whose plan Postgres logs for the guard "
        "(0: the guard checks before and after the load only)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the Postgres sessions of the load (to see the plan guard "
        "fail: enable_indexscan=off and random_page_cost=1000 take the HNSW scan away)",
    )
    args = parser.parse_args()
    if args.original and {"bare", "bare-http"} & set(args.scenarios.split(",")):
        parser.error("the bare query reads this project's table: not with --original")
    if args.pgbouncer and (args.original or args.hot):
        parser.error("--pgbouncer: this project's cache only, hot entries off")
    try:
        run(args)
    except PlanGuardError as exc:
        print(f"\nPLAN GUARD FAILED: {exc}", file=sys.stderr)
        sys.exit(3)


def run(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    scenarios = args.scenarios.split(",")
    # The servers (children) read it from the environment; the seeding cache ignores it.
    os.environ["SEMANTIC_CACHE_HOT_ENTRIES"] = str(args.hot)
    # The seeding cache, the guard and the servers (children) read these.
    os.environ["LOAD_EMBEDDER"] = args.embedder
    os.environ["LOAD_THRESHOLD"] = str(args.threshold)
    if args.memo is not None:
        os.environ["LOAD_EMBEDDING_MEMO"] = str(args.memo)
    if args.ef_search is not None:
        os.environ["SEMANTIC_CACHE_PGVECTOR_HNSW_EF_SEARCH"] = str(args.ef_search)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # this process and the Postgres it starts: core 1
    workload = build_workload(args.embedder, args.rows, args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data")
        pg.start()
        try:
            uri = pg.create_database("load")
            guard = Guard(uri, workload, args.expect_plan, pg.log_file)
            if args.original is None:
                asyncio.run(seed(uri, workload))
                asyncio.run(guard.check_store("before the load"))
                if "bare" in scenarios or "bare-http" in scenarios:
                    embedder = make_embedder(args.embedder)
                    vectors = asyncio.run(embedder.embed(workload.asked))
                    np.save(Path(tmp) / "vectors.npy", np.asarray(vectors, dtype=np.float32))
                    (Path(tmp) / "texts.json").write_text(json.dumps(workload.asked))
            with psycopg.connect(uri, autocommit=True) as conn:
                for setting in args.pg_setting:
                    name, _, value = setting.partition("=")
                    conn.execute(
                        sql.SQL("ALTER DATABASE load SET {n} = {v}").format(
                            n=sql.Identifier(*name.split(".")), v=sql.Literal(value)
                        )
                    )
            if args.original is None:
                guard.start_sampling(args.plan_sample)
            server_python = args.original or sys.executable
            fast = args.stack == "fast" or (args.stack == "auto" and fast_stack(server_python))
            print(
                f"uvicorn stack: {'uvloop + httptools' if fast else 'asyncio + h11'}; "
                f"embedder: {args.embedder}; threshold: {args.threshold}; "
                f"ef_search: {args.ef_search or 'pgvector default (40)'}; "
                f"hot entries: {args.hot or 'off'}; intended search plan: {guard.last or '-'}"
            )
            print(
                "| scenario | rows | concurrency | req/s | p50 ms | p90 ms | p99 ms "
                "| server CPU us/req | Postgres CPU us/req | expected X-Cache |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            seed_rows = args.rows  # the original seeds at its first start only
            postmaster = int((pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            p50: dict[tuple[str, int], float] = {}
            rps: dict[tuple[str, int, bool], float] = {}
            bouncer = start_pgbouncer(Path(tmp), pg.uri) if args.pgbouncer else None
            for scenario in scenarios:
                if scenario == "bare":
                    for level in levels:
                        bare_report(uri, args, level, guard.table, Path(tmp) / "vectors.npy")
                    continue
                if scenario == "baseline":
                    proc, port = start_server(None, stack=args.stack)
                elif scenario == "bare-http":
                    proc, port = start_server(
                        uri,
                        stack=args.stack,
                        app="benches.bare_http_app:app",
                        env={
                            "LOAD_BARE_TABLE": guard.table,
                            "LOAD_BARE_VECTORS": str(Path(tmp) / "vectors.npy"),
                            "LOAD_BARE_TEXTS": str(Path(tmp) / "texts.json"),
                        },
                    )
                else:
                    proc, port = start_server(
                        uri, original=args.original, rows=seed_rows, stack=args.stack
                    )
                    seed_rows = 0
                try:
                    for level in levels:
                        p50[scenario, level], rps[scenario, level, False] = report(
                            scenario, args, level, port, proc.pid, postmaster, workload
                        )
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                if bouncer is not None and scenario in ("exact", "semantic", "miss"):
                    proc, port = start_server(
                        bouncer.uri_for(uri), stack=args.stack, pooler="transaction"
                    )
                    try:
                        for level in levels:
                            _, rps[scenario, level, True] = report(
                                scenario,
                                args,
                                level,
                                port,
                                proc.pid,
                                postmaster,
                                workload,
                                label=f"{scenario} via PgBouncer",
                            )
                    finally:
                        proc.terminate()
                        proc.wait(timeout=30)
                if args.original is None and scenario in ("exact", "semantic", "miss"):
                    guard.check_sampled(scenario)
            if bouncer is not None:
                bouncer.stop()
                ratios = [
                    f"{scenario} at {level}: {rps[scenario, level, True] / direct:.2f}"
                    for (scenario, level, via), direct in rps.items()
                    if not via and (scenario, level, True) in rps
                ]
                print("\nreq/s through PgBouncer / direct: " + "; ".join(ratios))
            if args.original is None:
                asyncio.run(guard.check_store("after the load"))
                print("\nplan guard: " + "; ".join(guard.seen))
            for level in levels:
                if ("semantic", level) in p50 and ("bare-http", level) in p50:
                    print(
                        f"\nsemantic hit p50 / hand-written bare-query app p50 at "
                        f"concurrency {level}: {p50['semantic', level]:.3f} / "
                        f"{p50['bare-http', level]:.3f} ms = "
                        f"{p50['semantic', level] / p50['bare-http', level]:.2f}x"
                    )
            if "miss" in scenarios and args.original is None:
                embed_ms, put_ms = put_cost_where_served(uri)
                print(
                    f"\nembed + insert of a new question, measured alone where the server "
                    f"ran (p50 of 300, one at a time): embed {embed_ms:.3f} ms, put "
                    f"{put_ms:.2f} ms (embed included)"
                )
                if ("miss", 1) in p50 and ("baseline", 1) in p50:
                    # The insert runs after the response (a background store): off the
                    # miss's path, so only the embedding is subtracted.
                    added = p50["miss", 1] - p50["baseline", 1] - embed_ms
                    print(
                        f"a miss adds {added:.2f} ms at concurrency 1 beyond the app "
                        f"({p50['baseline', 1]:.2f} ms) and the embedding (miss p50 "
                        f"{p50['miss', 1]:.2f} ms - app - embed; the insert runs after "
                        f"the response)"
                    )
        finally:
            pg.stop()


def start_pgbouncer(tmp: Path, server_uri: str) -> PgBouncer:
    """Debian's pgbouncer in transaction mode in front of the server, with as many
    server connections as the cache's pool opens and PgBouncer's default reset (none
    between transactions)."""
    if find_pgbouncer() is None:
        raise SystemExit("--pgbouncer: no pgbouncer binary (apt-get install pgbouncer)")
    pool = CacheSettings.from_env().pg_pool_max_size
    bouncer = PgBouncer(
        tmp / "pgbouncer", server_uri, pool_mode="transaction", pool_size=pool, reset_always=False
    )
    bouncer.start()
    return bouncer


def bare_report(uri: str, args: argparse.Namespace, level: int, table: str, vectors: Path) -> None:
    """The floor of a semantic hit under load: the bare pgvector top-1 query for the
    semantic scenario's vectors, from ``level`` psycopg connections in one Python process
    pinned where the server runs (core 0), Postgres on core 1. Queries per second,
    medians."""
    cmd = [
        sys.executable,
        __file__,
        "--bare-worker",
        uri,
        str(level),
        str(args.seconds),
        table,
        str(vectors),
    ]
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


async def bare_worker(
    uri: str, level: int, seconds: float, table: str, vectors: Path
) -> dict[str, float]:
    """``SELECT id, response FROM t ORDER BY embedding <=> v LIMIT 1`` in a loop on
    ``level`` connections with the cache's session settings (``ef_search``), ``v``
    cycling through the vectors saved in ``vectors``."""
    from semanticcache._storage.pgvector import connection_options

    ef = os.environ.get("SEMANTIC_CACHE_PGVECTOR_HNSW_EF_SEARCH")
    options = connection_options(int(ef) if ef else None)
    literals = itertools.cycle(
        "[" + ",".join(repr(float(x)) for x in v) + "]" for v in np.load(vectors)
    )
    query = f"SELECT id, response FROM {table} ORDER BY embedding <=> %s::vector LIMIT 1"
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def loop() -> None:
        async with await psycopg.AsyncConnection.connect(
            uri, autocommit=True, options=options
        ) as conn:
            while time.perf_counter() < until:
                started = time.perf_counter()
                cur = await conn.execute(query, (next(literals),), prepare=True)
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


def put_cost_where_served(uri: str) -> tuple[float, float]:
    """:func:`put_cost` in a process pinned where the server ran (core 0): the model's
    speed depends on the core it gets."""
    cmd = [sys.executable, __file__, "--put-worker", uri]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    embed_ms, put_ms = json.loads(done.stdout.splitlines()[-1])
    return float(embed_ms), float(put_ms)


async def put_cost(uri: str, workload: Workload, rounds: int = 300) -> tuple[float, float]:
    """p50 of the embedding and of ``put`` (embed + insert) of new questions: what a miss
    must pay anyway (the embedding on its path, the insert after its response)."""
    embedder = make_embedder(workload.embedder)
    record = encode_record(StoredResponse(200, (), b"{}", False))
    embeds: list[float] = []
    puts: list[float] = []
    async with SemanticCache(
        pg_uri=uri, embedder=embedder, threshold=0.9, embedding_memo_size=0
    ) as cache:
        for _ in range(rounds):
            text = workload.new_question()
            started = time.perf_counter()
            await embedder.embed([text])
            embeds.append(time.perf_counter() - started)
            started = time.perf_counter()
            await cache.put(key_of(text), record, raise_errors=True)
            puts.append(time.perf_counter() - started)
    return statistics.median(embeds) * 1000, statistics.median(puts) * 1000


async def ask_each(port: int, payloads: Sequence[bytes], concurrency: int) -> None:
    """Every request of ``payloads`` once, from ``concurrency`` clients."""
    queue = list(reversed(payloads))

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(queue.pop())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(value)
                    for name, _, value in (line.partition(b":") for line in head.split(b"\r\n"))
                    if name.strip().lower() == b"content-length"
                )
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(concurrency)))


def report(
    scenario: str,
    args: argparse.Namespace,
    level: int,
    port: int,
    server_pid: int,
    postmaster_pid: int,
    workload: Workload,
    *,
    label: str | None = None,
) -> tuple[float, float]:
    """One table row (``label``: its first cell, default the scenario); the median p50
    in ms and the median requests per second."""
    # The hand-written floor answers the semantic scenario's requests.
    make = workload.maker("semantic" if scenario == "bare-http" else scenario, port)
    # X-Cache, with X-Cache-Match where the server sends one (the original does not).
    expected = {
        "baseline": b"",
        "bare-http": b"",
        "exact": b"HIT",
        "semantic": b"HIT",
        "miss": b"MISS",
    }
    if args.original is None:
        expected.update(exact=b"HIT/exact", semantic=b"HIT/semantic")
    # Warm-up: connections, prepared statements, the first lookups; with a real model,
    # every question once, so that the memo holds what it can (as in a steady state
    # where each question has been asked before).
    if workload.embedder != "hashing" and scenario == "semantic":
        asyncio.run(ask_each(port, [make() for _ in workload.asked], level))
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
        f"| {label or scenario} | {args.rows} | {level} | {med(rps_runs):,.0f} | {med(p50s):.2f} "
        f"| {med(p90s):.2f} | {med(p99s):.2f} | {med(server_cpu):.0f} | {med(pg_cpu):.0f} "
        f"| {min(shares):.1%} |",
        flush=True,
    )
    return med(p50s), med(rps_runs)


if __name__ == "__main__":
    main()
