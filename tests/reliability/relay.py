"""A loopback TCP relay that can pass, hang or cut the connections it carries.

Put it between the cache and Postgres or Redis to inject network faults that a real
server cannot be asked for: ``hang`` keeps every connection open and silently stops
moving bytes (a stalled peer, a dropped route), ``cut`` closes every connection and
refuses new ones (a crashed peer, a reset), ``pass`` relays as usual. The relay runs its
own event loop in a daemon thread, so synchronous tests and other processes (uvicorn
workers) can use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal, Self

__all__ = ["FaultRelay", "Mode"]

Mode = Literal["pass", "hang", "cut"]
_CHUNK = 65536


class FaultRelay:
    """Relays ``127.0.0.1:port`` to ``target_host:target_port`` in the current mode."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._resumed = asyncio.Event()
        self.port = 0
        self.connections = 0

    @property
    def mode(self) -> Mode:
        return self._mode

    def start(self) -> Self:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def set_mode(self, mode: Mode) -> None:
        """Switch every current and future connection to ``mode``."""
        self._call(self._set_mode(mode))

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call[T](self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> int:
        self._resumed.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _set_mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "hang":
            self._resumed.clear()
        else:
            self._resumed.set()
        if mode == "cut":
            for writer in list(self._writers):
                _abort(writer)
            self._writers.clear()

    async def _close(self) -> None:
        self._resumed.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == "cut":
            _abort(writer)
            return
        # A hung relay still accepts (the kernel would): the peer waits for bytes.
        await self._resumed.wait()
        if self._mode == "cut":  # type: ignore[comparison-overlap]  # changed while waiting
            _abort(writer)  # type: ignore[unreachable]
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _abort(writer)
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                _abort(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._resumed.wait()  # a hang holds the bytes, never drops them
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
