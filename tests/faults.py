"""Faults for reliability tests, on servers the test owns: a Postgres stalled (every
one of its processes stopped, connections left open) or restarted, and an event-loop lag
meter.

Stall only a server started for the test (``own_postgres``), never the session's: other
tests share that one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from semanticcache.storage.embedded import EmbeddedPostgres

__all__ = ["LoopLag", "free_port", "own_postgres", "postgres_pids", "stalled"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def own_postgres(folder: Path) -> EmbeddedPostgres:
    """An embedded Postgres of the test's own on a fixed free port (so that a restart
    keeps its URI); not started."""
    return EmbeddedPostgres(folder, port=free_port())


def postgres_pids(server: EmbeddedPostgres) -> list[int]:
    """The postmaster's PID and its children's (backends, background workers: every
    Postgres process is the postmaster's child). Linux (``/proc``)."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


@contextmanager
def stalled(server: EmbeddedPostgres) -> Iterator[None]:
    """Every process of ``server`` stopped (SIGSTOP) inside the block: open connections
    hang, new ones are accepted by the kernel and then hang too. Resumed (SIGCONT) on
    exit."""
    pids = postgres_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


class LoopLag:
    """A ticker task on the running loop: ``max_gap`` is the longest time between two of
    its ticks (what any other task could have been delayed by)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last - self.interval)
            last = now

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
