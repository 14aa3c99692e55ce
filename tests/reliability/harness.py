"""Fault injection under mixed load: the reliability suite's engine.

One run starts its own Postgres (embedded, pgvector) and ``redis-server``, puts a
:class:`~tests.faults.Relay` in front of each, and serves
``tests.reliability.app:cached_app`` with ``uvicorn --workers 2``. A load generator sends
a mix of requests (repeated questions and their paraphrases, new questions, JSON and
streamed answers, three tenants, three credentials) while a schedule of faults runs:
relays that hang or cut, Postgres and Redis stopped (SIGSTOP), killed (SIGKILL) and
started again. Nothing restarts the app's processes.

Every answer is checked: its status (no 5xx), its latency against the budget, its
content (complete JSON, or a complete event stream ending in ``[DONE]``), and the handler
call it names (same question group, tenant and credential as the request; the call is in
the handler's log). Per phase the run counts requests, hits, 5xx, late, wrong, partial and
cross-tenant or cross-credential answers, and how long after a fault ends the first hit
comes back; the workers' RSS is sampled every second.

    .venv/bin/python -m tests.reliability.harness --fault-seconds 20 --recover-seconds 30

prints the report as JSON (see docs/RELIABILITY.md); the test suite runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from semanticcache._devserver import EmbeddedPostgres
from tests.faults import LoopLag, Relay, postgres_pids
from tests.reliability.app import credential_digest
from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TENANTS = ("acme", "globex", "initech")
CREDENTIALS = ("Bearer key-alpha", "Bearer key-beta", "Bearer key-gamma")
# Question groups: each a stored form and rewordings the hashing embedder puts close.
GROUPS = [
    (f"how do I rotate the {thing} credentials on {place}",)
    for thing in ("database", "storage", "queue", "mail", "billing", "search")
    for place in ("staging", "production")
]


def variants(question: str) -> list[str]:
    """A question and rewordings of it (case, punctuation, a polite tail)."""
    return [question, question.capitalize() + "?", question + ", please", question.upper()]


def group_of(text: str) -> int | None:
    for i, (question,) in enumerate(GROUPS):
        if text in variants(question):
            return i
    return None


@dataclass
class PhaseReport:
    name: str
    seconds: float = 0.0
    requests: int = 0
    hits: int = 0
    errors_5xx: int = 0
    late: int = 0
    wrong: int = 0
    partial: int = 0
    cross_tenant: int = 0
    cross_credential: int = 0
    transport_errors: int = 0
    max_latency: float = 0.0
    # The longest the load generator's own loop (which also runs the relays) stood still:
    # the test rig's pause, not the app's, so it is taken off each answer's latency.
    rig_stall: float = 0.0
    first_hit_after: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    # What each late answer was (the first few): enough to tell which path was slow.
    late_answers: list[dict[str, object]] = field(default_factory=list)


@dataclass
class RunReport:
    phases: list[PhaseReport]
    untraced: int
    rss_mb: dict[str, list[float]]
    budget_seconds: float
    late_bound_seconds: float

    def total(self, name: str) -> int:
        return sum(int(getattr(p, name)) for p in self.phases)


@dataclass
class _Phase:
    report: PhaseReport
    started: float
    answers: list[tuple[str, str, str]] = field(default_factory=list)


class Load:
    """The load generator: ``concurrency`` clients sending the request mix."""

    def __init__(self, base_url: str, *, concurrency: int, late_bound: float, seed: int) -> None:
        self.base_url = base_url
        self.concurrency = concurrency
        self.late_bound = late_bound
        self.rng = random.Random(seed)
        self.phase: _Phase | None = None
        self.answers: list[tuple[str, str, str, str]] = []
        self.lag = LoopLag()
        self._stop = asyncio.Event()

    def begin(self, name: str) -> None:
        self.phase = _Phase(PhaseReport(name), time.monotonic())

    def end(self) -> PhaseReport:
        assert self.phase is not None
        report = self.phase.report
        ended = time.monotonic()
        report.seconds = round(ended - self.phase.started, 2)
        report.rig_stall = round(self.lag.longest_between(self.phase.started, ended), 3)
        return report

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        timeout = httpx.Timeout(self.late_bound * 4)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=timeout) as c:
            with self.lag:
                await asyncio.gather(*(self._client(c) for _ in range(self.concurrency)))

    def stop(self) -> None:
        self._stop.set()

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            await self._one(client)

    def _pick(self) -> tuple[str, int | None]:
        if self.rng.random() < 0.2:
            return f"a new question about case {secrets.token_hex(6)}", None
        group = self.rng.randrange(len(GROUPS))
        return self.rng.choice(variants(GROUPS[group][0])), group

    async def _one(self, client: httpx.AsyncClient) -> None:
        text, group = self._pick()
        tenant = self.rng.choice(TENANTS)
        credential = self.rng.choice(CREDENTIALS)
        stream = self.rng.random() < 0.3
        body = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}
        headers = {"x-tenant": tenant, "authorization": credential}
        phase = self.phase
        if phase is None:
            return
        report = phase.report
        started = time.monotonic()
        try:
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as r:
                raw = await r.aread()
        except httpx.HTTPError:
            report.requests += 1
            report.transport_errors += 1
            return
        ended = time.monotonic()
        latency = ended - started - self.lag.stalled_between(started, ended)
        report.requests += 1
        report.statuses[str(r.status_code)] = report.statuses.get(str(r.status_code), 0) + 1
        report.max_latency = max(report.max_latency, round(latency, 3))
        if latency > self.late_bound:
            report.late += 1
            if len(report.late_answers) < 5:
                report.late_answers.append(
                    {
                        "after": round(started - phase.started, 2),
                        "seconds": round(ended - started, 3),
                        "rig_stall": round(ended - started - latency, 3),
                        "stream": stream,
                        "status": r.status_code,
                        "x-cache": r.headers.get("x-cache"),
                    }
                )
        if r.status_code >= 500:
            report.errors_5xx += 1
            return
        if r.headers.get("x-cache", "").upper() == "HIT":
            report.hits += 1
            if report.first_hit_after is None:
                report.first_hit_after = round(time.monotonic() - phase.started, 2)
        record = _answer_of(raw, stream)
        if record is None:
            report.partial += 1
            return
        answered_group = group_of(record["q"])
        if (group is None and record["q"] != text) or (
            group is not None and answered_group != group
        ):
            report.wrong += 1
        if record["tenant"] != tenant:
            report.cross_tenant += 1
        if record["cred"] != credential_digest(credential):
            report.cross_credential += 1
        self.answers.append((record["call"], record["q"], record["tenant"], record["cred"]))


def _answer_of(raw: bytes, stream: bool) -> dict[str, str] | None:
    """The call record an answer carries; None when the answer is cut or malformed."""
    try:
        if not stream:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        else:
            events = [e for e in raw.split(b"\n\n") if e.strip()]
            if not events or events[-1].strip() != b"data: [DONE]":
                return None
            content = ""
            for event in events[:-1]:
                if not event.startswith(b"data: "):
                    return None
                delta = json.loads(event[6:])["choices"][0]["delta"]
                content += delta.get("content", "")
        record = json.loads(content)
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(record, dict) or not {"call", "q", "tenant", "cred"} <= record.keys():
        return None
    return record


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; no process is found by name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _signal_postgres(server: EmbeddedPostgres, sig: signal.Signals) -> None:
    for pid in postgres_pids(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Stack:
    """The servers of one run: Postgres, Redis, their relays, the uvicorn workers."""

    pg: EmbeddedPostgres
    redis: RedisServer
    redis_port: int
    pg_relay: Relay
    redis_relay: Relay
    app: subprocess.Popen[bytes]
    base_url: str
    call_log: Path


def _spawn_app(
    workdir: Path, env: dict[str, str], *, port: int, workers: int
) -> subprocess.Popen[bytes]:
    with (workdir / "app.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.reliability.app:cached_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def start_stack(workdir: Path, *, budget: float, workers: int = 2) -> Stack:
    # A fixed port: a restarted server is found where the clients left it.
    pg = EmbeddedPostgres(workdir / "pg", port=free_port())
    await asyncio.to_thread(pg.start)
    pg_uri = await asyncio.to_thread(pg.create_database, "reliability")
    redis = RedisServer(workdir / "redis")
    await asyncio.to_thread(redis.start)
    pg_relay, redis_relay = Relay(pg_uri), Relay(redis.url)
    await pg_relay.start()
    await redis_relay.start()
    call_log = workdir / "calls"
    call_log.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "python"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
        "SEMANTIC_CACHE_PG_URI": pg_relay.uri,
        "SEMANTIC_CACHE_REDIS_URI": redis_relay.uri,
        "SEMANTIC_CACHE_STORE_TIMEOUT_SECONDS": str(budget),
        "SEMANTIC_CACHE_EMBED_TIMEOUT_SECONDS": str(budget),
        "SEMANTIC_CACHE_BREAKER_COOLDOWN_SECONDS": "2",
        "SEMANTIC_CACHE_CACHE_AUTHORIZED_REQUESTS": "true",
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": "reliability-suite-digest-key-0123456789",
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        "RELIABILITY_CALL_LOG": str(call_log),
    }
    app = _spawn_app(workdir, env, port=port, workers=workers)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if app.poll() is not None:
                log = (workdir / "app.log").read_text()[-2000:]
                raise RuntimeError(f"the app exited: {log}")
            try:
                if (await client.get(base_url + "/docs", timeout=1)).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError("the app did not start within 60 s")
    return Stack(pg, redis, redis.port, pg_relay, redis_relay, app, base_url, call_log)


async def stop_stack(stack: Stack) -> None:
    stack.app.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(stack.app.wait, timeout=20)
    except subprocess.TimeoutExpired:
        stack.app.kill()
        stack.app.wait()
    await stack.pg_relay.close()
    await stack.redis_relay.close()
    stack.redis.stop()
    await asyncio.to_thread(stack.pg.stop)


Action = Callable[[Stack], Awaitable[None]]
Fault = tuple[str, Action, Action]


def _relay(which: str, method: str) -> Action:
    async def act(stack: Stack) -> None:
        getattr(getattr(stack, which), method)()

    return act


async def _kill_redis(stack: Stack) -> None:
    os.kill(stack.redis.pid or 0, signal.SIGKILL)
    await asyncio.to_thread(stack.redis.stop)  # reaps the killed process


async def _restart_redis(stack: Stack) -> None:
    await asyncio.to_thread(stack.redis.start, port=stack.redis_port)


async def _stop_pg(stack: Stack) -> None:
    _signal_postgres(stack.pg, signal.SIGSTOP)


async def _continue_pg(stack: Stack) -> None:
    _signal_postgres(stack.pg, signal.SIGCONT)


async def _kill_pg(stack: Stack) -> None:
    _signal_postgres(stack.pg, signal.SIGKILL)


async def _restart_pg(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a killed server leaves a stale pid file
            await asyncio.to_thread(stack.pg.stop, force=True)
        try:
            await asyncio.to_thread(stack.pg.start)
            return
        except Exception:
            await asyncio.sleep(0.5)
    raise RuntimeError("Postgres did not restart")


FAULTS: list[Fault] = [
    ("postgres relay hangs", _relay("pg_relay", "hang"), _relay("pg_relay", "resume")),
    ("postgres relay down", _relay("pg_relay", "down"), _relay("pg_relay", "resume")),
    ("redis relay hangs", _relay("redis_relay", "hang"), _relay("redis_relay", "resume")),
    ("redis relay down", _relay("redis_relay", "down"), _relay("redis_relay", "resume")),
    ("postgres SIGSTOP", _stop_pg, _continue_pg),
    ("postgres SIGKILL + start", _kill_pg, _restart_pg),
    ("redis SIGKILL + start", _kill_redis, _restart_redis),
]


async def run(
    workdir: Path,
    *,
    fault_seconds: float,
    recover_seconds: float,
    budget: float = 0.5,
    concurrency: int = 16,
    seed: int = 0,
    faults: list[Fault] | None = None,
) -> RunReport:
    """One run: warm-up, then each fault for ``fault_seconds`` and ``recover_seconds`` of
    recovery; returns the per-phase counts."""
    # The longest a request may take: its handler, the cache's guarded steps at their
    # budget (lookup, single-flight lease, embedding), and scheduling slack.
    late_bound = 0.02 + 4 * budget + 1.0
    stack = await start_stack(workdir, budget=budget)
    rss: dict[str, list[float]] = {str(pid): [] for pid in _children(stack.app.pid)}
    load = Load(stack.base_url, concurrency=concurrency, late_bound=late_bound, seed=seed)
    phases: list[PhaseReport] = []

    async def sample_rss() -> None:
        while True:
            for pid in rss:
                rss[pid].append(_rss_mb(int(pid)))
            await asyncio.sleep(1.0)

    async def phase(name: str, seconds: float, action: Action | None) -> None:
        load.begin(name)
        if action is not None:
            await action(stack)
        await asyncio.sleep(seconds)
        phases.append(load.end())

    # Objects made before the run (every earlier test's, in a suite) stay out of the
    # collector's full passes: such a pass over a large heap stalls the rig's loop.
    gc.freeze()
    sampler = asyncio.create_task(sample_rss())
    driver = asyncio.create_task(load.run())
    try:
        await phase("warm-up", recover_seconds, None)
        for name, inject, heal in faults if faults is not None else FAULTS:
            await phase(name, fault_seconds, inject)
            await phase(f"after {name}", recover_seconds, heal)
    finally:
        load.stop()
        await driver
        sampler.cancel()
        gc.unfreeze()
        await stop_stack(stack)
    calls: dict[str, tuple[str, str, str]] = {}
    for path in stack.call_log.glob("calls-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            calls[record["call"]] = (record["q"], record["tenant"], record["cred"])
    untraced = sum(1 for call, *rest in load.answers if calls.get(call) != tuple(rest))
    return RunReport(phases, untraced, rss, budget, late_bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault-seconds", type=float, default=20.0)
    parser.add_argument("--recover-seconds", type=float, default=30.0)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="semcache-reliability-") as tmp:
        report = asyncio.run(
            run(
                Path(tmp),
                fault_seconds=args.fault_seconds,
                recover_seconds=args.recover_seconds,
                budget=args.budget,
                concurrency=args.concurrency,
                seed=args.seed,
            )
        )
    print(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    main()
