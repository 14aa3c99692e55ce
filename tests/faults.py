"""Faults for reliability tests, on servers the test owns: a Postgres stalled (every
one of its processes stopped, connections left open) or restarted, a TCP relay that
passes, hangs or cuts connections, and an event-loop lag meter.

Stall only a server started for the test (``own_postgres``), never the session's: other
tests share that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from semanticcache._devserver import EmbeddedPostgres
from tests.servers import free_port

__all__ = ["LoopLag", "Relay", "own_postgres", "postgres_pids", "stalled"]


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
    its ticks (what any other task could have been delayed by). Gaps over ``stall``
    seconds are kept (``time.monotonic()`` ends), so :meth:`stalled_between` can say how
    long the loop stood still inside a span."""

    def __init__(self, interval: float = 0.005, *, stall: float = 0.1) -> None:
        self.interval = interval
        self.stall = stall
        self.max_gap = 0.0
        self.stalls: list[tuple[float, float]] = []
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        self._last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            gap = now - self._last - self.interval
            self.max_gap = max(self.max_gap, gap)
            if gap > self.stall:
                self.stalls.append((self._last + self.interval, now))
            self._last = now

    def stalled_between(self, start: float, end: float) -> float:
        """Seconds of ``[start, end]`` (``time.monotonic()``) the loop stood still."""
        return sum(self._overlaps(start, end))

    def longest_between(self, start: float, end: float) -> float:
        """The longest stall inside ``[start, end]``, in seconds (0.0: none)."""
        return max(self._overlaps(start, end), default=0.0)

    def _overlaps(self, start: float, end: float) -> list[float]:
        # A stall whose end the ticker has not seen yet counts too: after a pause, tasks
        # woken by I/O can run before the ticker does.
        stalls = list(self.stalls)
        now = time.monotonic()
        pending = self._last + self.interval
        if self._task is not None and not self._task.done() and now - pending > self.stall:
            stalls.append((pending, now))
        return [max(0.0, min(end, s_end) - max(start, s_start)) for s_start, s_end in stalls]

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


class Relay:
    """A loopback TCP relay in front of a Postgres or a Redis, on the running loop.

    ``uri``: the server's URI (libpq, or ``redis://``) with the relay as host and port.
    ``hang()``: stop forwarding in both directions (connections stay open, new ones are
    accepted and held: a server that stalled, or a network that black-holes);
    ``resume()``: forward again, what was held included. ``cut()``: reset every open
    connection (a restart, a proxy's idle timeout, a network failure); new ones are
    relayed. ``down()``: reset every connection and refuse new ones until ``resume()``
    (a server that died).
    """

    def __init__(self, target_uri: str) -> None:
        self._redis = target_uri.startswith("redis://")
        if self._redis:
            parts = urlsplit(target_uri)
            self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 6379
        else:
            params = conninfo_to_dict(target_uri)
            self._host = str(params.get("host") or "127.0.0.1")
            self._port = int(str(params.get("port") or 5432))
        self._target_uri = target_uri
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.uri = ""

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; the relayed URI."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        if self._redis:
            self.uri = urlsplit(self._target_uri)._replace(netloc=f"127.0.0.1:{port}").geturl()
        else:
            self.uri = make_conninfo(self._target_uri, host="127.0.0.1", port=port)
        return self.uri

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def hang(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._refusing = False
        self._flowing.set()

    def down(self) -> None:
        self._refusing = True
        self._flowing.set()  # held connections are reset, not left waiting
        self.cut()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # RST: no orderly goodbye
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            if self._refusing:
                raise ConnectionRefusedError
            if self._host.startswith("/"):
                path = f"{self._host}/.s.PGSQL.{self._port}"
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            else:
                up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)
