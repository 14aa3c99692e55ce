"""HTTP load benchmark of the reverse proxy: uvicorn processes on loopback.

Scenarios: ``direct`` (GET straight to the upstream: the baseline), ``proxy-get`` (the
same GET through the proxy: a pass-through, the forwarding overhead), ``direct-post``
(the chat POST straight to the upstream), ``proxy-hit`` (the same POST through the
proxy, an exact cache hit every time: the upstream is not called) and ``proxy-semantic``
(a paraphrase: a semantic hit every time). Each at the given concurrencies, each run
``--runs`` times; the table reports medians of requests per second and of p50 / p99
latency. With two cores or more the proxy is pinned to core 0, the upstream, this load
generator and the embedded Postgres to core 1 (``taskset``); the ``direct`` scenarios
call a second upstream instance pinned to core 0, so the server measured always runs
on core 0. The rounds interleave the scenarios. The plan guard of ``load_middleware``
holds here too (exit status 3 when a search ran another plan than the intended one).

The load generator is load_middleware's: a minimal HTTP/1.1 keep-alive client on raw
asyncio streams, one connection per concurrent client.

    .venv/bin/python benches/load_proxy.py --concurrency 16,64 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benches.load_middleware import (  # noqa: E402
    PARAPHRASE,
    STORED,
    Guard,
    body,
    build_workload,
    free_port,
    percentile,
    request,
    run_load,
    seed,
)
from benches.plan_guard import PlanGuardError  # noqa: E402
from semanticcache._devserver import EmbeddedPostgres  # noqa: E402

SCENARIOS = "direct,proxy-get,direct-post,proxy-hit,proxy-semantic"


def get_request(port: int) -> bytes:
    return f"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


def start(target: str, env: dict[str, str], core: int) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``benches.load_proxy_app:<target>`` pinned to ``core``."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        f"benches.load_proxy_app:{target}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-server-header",
        "--no-date-header",
    ]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", str(core), *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn ({target}) exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def constant(payload: bytes) -> Callable[[], bytes]:
    def make() -> bytes:
        return payload

    return make


@dataclass
class Cell:
    """One (scenario, concurrency) cell: a run's figures appended per round."""

    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    hits: list[float] = field(default_factory=list)

    def add(self, port: int, make: Callable[[], bytes], level: int, seconds: float) -> None:
        rate, latencies, seen = asyncio.run(run_load(port, make, level, seconds))
        latencies.sort()
        self.rps.append(rate)
        self.p50.append(percentile(latencies, 0.50) * 1000)
        self.p99.append(percentile(latencies, 0.99) * 1000)
        self.hits.append(seen[b"HIT"] / max(1, len(latencies)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenarios", default=SCENARIOS)
    parser.add_argument(
        "--plan-sample",
        type=float,
        default=0.02,
        help="share of the proxy's statements whose plan Postgres logs for the plan guard",
    )
    args = parser.parse_args()
    try:
        run(args)
    except PlanGuardError as exc:
        print(f"\nPLAN GUARD FAILED: {exc}", file=sys.stderr)
        sys.exit(3)


def run(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    scenarios = args.scenarios.split(",")
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # this process and the Postgres it starts: core 1
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data")
        pg.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            uri = pg.create_database("load")
            workload = build_workload("hashing", args.rows)
            asyncio.run(seed(uri, workload))
            # The search of the paraphrase must run its intended plan: checked before
            # and after the load, and in a sample of the proxy's own statements.
            guard = Guard(uri, workload, "auto", pg.log_file)
            asyncio.run(guard.check_store("before the load"))
            guard.start_sampling(args.plan_sample)
            # The server measured is on core 0 in every scenario: the upstream clients
            # call directly, or the proxy (whose own upstream is a second instance
            # on core 1, next to the load generator and Postgres).
            direct, direct_port = start("upstream", {}, core=0)
            behind, behind_port = start("upstream", {}, core=1)
            upstream = f"http://127.0.0.1:{behind_port}"
            proxy, proxy_port = start("app", {"LOAD_PG_URI": uri, "LOAD_UPSTREAM": upstream}, 0)
            procs += [direct, behind, proxy]
            makers: dict[str, tuple[int, Callable[[], bytes]]] = {}
            for scenario in scenarios:
                port = direct_port if scenario.startswith("direct") else proxy_port
                payload = {
                    "direct": get_request(port),
                    "proxy-get": get_request(port),
                    "direct-post": request(port, body(STORED)),
                    "proxy-hit": request(port, body(STORED)),
                    "proxy-semantic": request(port, body(PARAPHRASE)),
                }[scenario]
                makers[scenario] = (port, constant(payload))
            print("| scenario | concurrency | req/s | p50 ms | p99 ms | X-Cache: HIT |")
            print("|---|---|---|---|---|---|")
            for level in levels:
                cells = {scenario: Cell() for scenario in scenarios}
                for port, make in makers.values():
                    asyncio.run(run_load(port, make, level, 0.5))  # warm-up
                # Rounds interleave the scenarios, so the other load on the machine
                # weighs on all of them alike; the medians are per scenario.
                for _ in range(args.runs):
                    for scenario, (port, make) in makers.items():
                        cells[scenario].add(port, make, level, args.seconds)
                med = statistics.median
                for scenario, cell in cells.items():
                    print(
                        f"| {scenario} | {level} | {med(cell.rps):,.0f} | {med(cell.p50):.2f} "
                        f"| {med(cell.p99):.2f} | {min(cell.hits):.0%} |",
                        flush=True,
                    )
            guard.check_sampled("proxy")
            asyncio.run(guard.check_store("after the load"))
            print("\nplan guard: " + "; ".join(guard.seen))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            pg.stop()


if __name__ == "__main__":
    main()
