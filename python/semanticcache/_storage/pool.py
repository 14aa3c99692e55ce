"""The store's connection pool: a checkout never hands out a connection the server closed.

After a Postgres restart (or an idle-connection timeout on a proxy) every idle
connection of a pool is dead, and each would fail the next query sent on it. The server
closes them with a message and a FIN, so the client's socket of such a connection is
readable while it sits idle. :class:`StorePool` looks at that on every checkout, with one
non-blocking ``poll`` (no round trip), and discards the connections it finds closed,
handing out the next one (or a new one). A check by query (``SELECT``, as psycopg_pool's
``check_connection`` does) would cost a round trip on every checkout.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

__all__ = ["StorePool", "closed_by_server"]

# Reads of an idle connection's pending messages before it counts as closed.
_MAX_READS = 4


def closed_by_server(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection is known to be unusable without sending it anything.

    Data waiting on an idle connection is either an asynchronous message (a notice, a
    parameter change: consumed here) or the server's farewell (an error message) and
    the end of the stream, which libpq sees on its next read.
    """
    pgconn = conn.pgconn
    try:
        for _ in range(_MAX_READS):
            if pgconn.status != pq.ConnStatus.OK:
                return True
            if not _readable(pgconn.socket):
                return False
            pgconn.consume_input()
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    # Still messages after that many reads: nothing an idle connection should get.
    return True


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


class StorePool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """An :class:`~psycopg_pool.AsyncConnectionPool` whose :meth:`getconn` (and so
    ``connection()``) skips connections :func:`closed_by_server` finds closed."""

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the overridden method's signature
    ) -> psycopg.AsyncConnection[Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(deadline - time.monotonic())
            if not closed_by_server(conn):
                return conn
            # Its transaction status is now unknown: the pool drops it and opens another.
            await self.putconn(conn)
