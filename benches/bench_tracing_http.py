"""The cost of ``SEMANTIC_CACHE_TRACING`` (and with ``--metrics``, of the Prometheus
metrics) over HTTP, as a client sees a hit: uvicorn servers of ``benches/load_app.py``
on one Postgres, tracing off, on with every trace sampled, and on with a share sampled
(``ParentBased(TraceIdRatioBased(share))``, the production setting); spans go through a
``BatchSpanProcessor`` to an exporter that drops them. ``--metrics`` adds a server with
the metrics alone, and turns them on in the traced ones.

Semantic hits at concurrency 1. ``--embedder hashing`` (the default): a paraphrase of
the one stored question, its vector remembered unless ``--memo 0``: the cheapest hit
there is, so the ratio is tracing's worst. ``--embedder local``: the default local model
and stage 2, ``--questions`` generated questions stored and their rewordings asked, each
embedded (memo 0): a semantic hit as the default configuration serves one.
``--rounds`` short runs of each server in turn (the order rotating each round), so that
the drift of a shared machine falls on each alike. Prints, per server, the median and
the minimum over the rounds of the p50 latency, the median of its ratio to tracing off's
p50 in the same round, and the median of the server's CPU time per request and its
ratio to tracing off's. The servers are pinned to core 0, this client and Postgres to
core 1 (``taskset``) on two cores or more.

    .venv/bin/python -m benches.bench_tracing_http --rounds 12 --seconds 1.2
    .venv/bin/python -m benches.bench_tracing_http --embedder local --metrics --rounds 12
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benches.load_middleware import (
    Workload,
    build_workload,
    cpu_seconds,
    fast_stack,
    run_load,
    seed,
    start_server,
)
from semanticcache._devserver import EmbeddedPostgres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=1.2, help="each run's length")
    parser.add_argument("--sample", type=float, default=0.01, help="the third server's share")
    parser.add_argument("--memo", type=int, help="the embedding memo size (0: embed each hit)")
    parser.add_argument(
        "--embedder",
        choices=("hashing", "local"),
        default="hashing",
        help="local: the default local model and its stage 2, every hit's text embedded "
        "(memo 0), --questions generated questions and their rewordings",
    )
    parser.add_argument("--questions", type=int, default=300, help="with --embedder local")
    parser.add_argument(
        "--metrics", action="store_true", help="Prometheus metrics on in every server but off"
    )
    args = parser.parse_args()
    os.environ["LOAD_EMBEDDER"] = args.embedder
    if args.embedder == "local" and args.memo is None:
        args.memo = 0
    if args.memo is not None:
        os.environ["LOAD_EMBEDDING_MEMO"] = str(args.memo)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # this process and the Postgres it starts: core 1
    measured = {"SEMANTIC_CACHE_METRICS": "on"} if args.metrics else {}
    traced = {**measured, "SEMANTIC_CACHE_TRACING": "on"}
    modes: dict[str, dict[str, str]] = {"off": {}}
    if args.metrics:
        modes["metrics"] = measured
    modes["on"] = {**traced, "LOAD_TRACE_SAMPLE": "1"}
    modes[f"{args.sample:.0%}"] = {**traced, "LOAD_TRACE_SAMPLE": str(args.sample)}
    workload = (
        build_workload("hashing", 100)
        if args.embedder == "hashing"
        else build_workload("local", args.questions, args.questions)
    )
    with tempfile.TemporaryDirectory(prefix="semcache-bench-tracing-http-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data")
        pg.start()
        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            uri = pg.create_database("load")
            asyncio.run(seed(uri, workload))
            for mode, env in modes.items():
                servers[mode] = start_server(uri, env=env)
            stack = "uvloop + httptools" if fast_stack(sys.executable) else "asyncio + h11"
            print(f"uvicorn stack: {stack}; {args.rounds} rounds of {args.seconds} s each")
            p50: dict[str, list[float]] = {mode: [] for mode in modes}
            cpu: dict[str, list[float]] = {mode: [] for mode in modes}
            order = list(modes)
            for mode in order:  # warm each
                asyncio.run(_hits(servers[mode][1], workload, 1.0))
            for round_ in range(args.rounds):
                turn = round_ % len(order)
                for mode in order[turn:] + order[:turn]:
                    proc, port = servers[mode]
                    used = cpu_seconds(proc.pid)
                    latencies = asyncio.run(_hits(port, workload, args.seconds))
                    cpu[mode].append((cpu_seconds(proc.pid) - used) / len(latencies))
                    p50[mode].append(statistics.median(latencies))
            base_cpu = statistics.median(cpu["off"])
            print(
                "| tracing | p50 us (median) | p50 us (min) | p50 / off (median of rounds) "
                "| server CPU us/req | CPU / off |"
            )
            print("|---|---|---|---|---|---|")
            for mode in modes:
                ratio = statistics.median(a / b for a, b in zip(p50[mode], p50["off"], strict=True))
                used = statistics.median(cpu[mode])
                print(
                    f"| {mode} | {statistics.median(p50[mode]) * 1e6:.0f} "
                    f"| {min(p50[mode]) * 1e6:.0f} | {ratio:.3f} "
                    f"| {used * 1e6:.0f} | {used / base_cpu:.3f} |"
                )
            print(
                "p50 of each round (us): "
                + "; ".join(
                    f"{mode} " + " ".join(f"{v * 1e6:.0f}" for v in p50[mode]) for mode in modes
                )
            )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
            pg.stop()


async def _hits(port: int, workload: Workload, seconds: float) -> list[float]:
    """One client's semantic hits for ``seconds``: their latencies (every one a hit)."""
    _, latencies, seen = await run_load(port, workload.maker("semantic", port), 1, seconds)
    if seen[b"HIT/semantic"] != len(latencies):
        raise SystemExit(f"not every request was a semantic hit: {dict(seen)}")
    return latencies


if __name__ == "__main__":
    main()
