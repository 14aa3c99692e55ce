"""Hot entries: exact hits served from process memory, kept honest by Postgres.

An exact repeat otherwise costs one Postgres probe. With ``hot_entries`` set, the last
entries served as exact hits stay in memory (bounded by count and bytes) and the next
repeat of the same (partition, text digest) is answered without a round trip.

Correctness does not rest on this process seeing every write: triggers on the cache
table (see :data:`TRIGGER_SQL`) ``NOTIFY`` on every change that could make a remembered
entry wrong: any ``DELETE`` (purge, delete by id, expiry purge, a hand-written SQL
delete) and any ``UPDATE`` of an entry's response, key or expiry (a ``put`` that
replaces an entry). Each process ``LISTEN``\\s on its own connection and drops what the
notice names. The memory is only used while that connection is up: the listener clears
it and stops serving from it when the connection drops, and starts again once it is
back. Entries never outlive their ``expires_at``. What remains is the delivery delay of
a notice (a few milliseconds on a healthy server) during which a deleted or replaced
entry can still be served by another process: documented in docs/cache.md.

The same listener tracks the table's Redis epoch (see
:mod:`semanticcache._storage.redis_tier`) for a cache with the Redis tier: it reads the
epoch from ``semcache_redis_epochs`` each time it connects and takes every advance from
an ``e<epoch>`` notice. While it is not connected the epoch is unknown and no Redis copy
is served.

A generation counter closes the race between a lookup that read a row from Postgres and
a notice that arrived before the row was remembered: the row is only remembered if no
notice arrived since the lookup began. With read replicas, a lookup may read a row the
primary deleted before the notice: each notice raises a replay fence (see
:mod:`semanticcache._storage.replicas`), and while it is up the generation is
:data:`FENCED`, which no row is remembered (or copied to Redis) under.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import psycopg
from psycopg import sql

__all__ = [
    "FENCED",
    "REDIS_EPOCHS_SQL",
    "TRIGGER_SQL",
    "HotEntries",
    "HotEntry",
    "advance_redis_epoch_sql",
    "trigger_statements",
]

_log = logging.getLogger("semanticcache.cache")

# Entries larger than this are not kept: one big response should not evict many.
_MAX_ENTRY_BYTES: Final = 256 * 1024
_RECONNECT_PAUSE: Final = 1.0

FENCED: Final = -1
"""The generation while a replica may still hold rows older than the last notice."""


class Fence(Protocol):
    """What the listener raises on each notice
    (:class:`~semanticcache._storage.replicas.ReplayFence`)."""

    @property
    def up(self) -> bool: ...

    def raise_(self) -> None: ...

    async def stop(self) -> None: ...


TRIGGER_SQL: Final = """
CREATE OR REPLACE FUNCTION semcache_notify_row() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify(TG_TABLE_NAME, OLD.id::text);
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION semcache_notify_all() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify(TG_TABLE_NAME, '*');
    RETURN NULL;
END
$fn$;
"""
"""The notify functions (shared by every cache table); the triggers are per table."""

REDIS_EPOCHS_SQL: Final = """
CREATE TABLE IF NOT EXISTS semcache_redis_epochs (
    cache_table text PRIMARY KEY,
    epoch bigint NOT NULL
)
"""
"""Each cache table's Redis epoch: Redis copies written under an older one are not
served. Logged (not UNLOGGED): an epoch that went back after a crash would make
invalidated copies servable again."""
_READ_EPOCH: Final = "SELECT epoch FROM semcache_redis_epochs WHERE cache_table = %s"


def advance_redis_epoch_sql() -> str:
    """Advance a table's epoch (parameters: the table twice); returns the new epoch and
    notifies the table's listeners (``e<epoch>``) when the transaction commits."""
    return (
        "UPDATE semcache_redis_epochs SET epoch = epoch + 1 WHERE cache_table = %s "
        "RETURNING epoch, pg_notify(%s, 'e' || epoch)"
    )


def trigger_statements(table: str) -> dict[str, sql.Composed]:
    """The two triggers of ``table``, by name: a changed entry names its id; a
    ``DELETE`` statement (whatever it deleted) tells listeners to drop everything.
    ``UPDATE OF`` leaves hit-count updates silent. Create only the missing ones: a
    ``CREATE`` (or ``DROP``) of a trigger locks the table against every lookup."""
    t = sql.Identifier(table)
    return {
        "semcache_changed": sql.SQL(
            "CREATE TRIGGER semcache_changed AFTER UPDATE OF "
            "partition, text_digest, response, expires_at ON {t} "
            "FOR EACH ROW EXECUTE FUNCTION semcache_notify_row()"
        ).format(t=t),
        "semcache_deleted": sql.SQL(
            "CREATE TRIGGER semcache_deleted AFTER DELETE OR TRUNCATE ON {t} "
            "FOR EACH STATEMENT EXECUTE FUNCTION semcache_notify_all()"
        ).format(t=t),
    }


@dataclass(frozen=True, slots=True)
class HotEntry:
    """An exact entry remembered in memory."""

    entry_id: int
    response: bytes
    created_at: datetime
    expires_at: datetime | None
    """``None``: never expires."""


class HotEntries:
    """The in-memory exact entries of one cache table and the listener that keeps them
    true. ``max_entries`` and ``max_bytes`` bound the memory; ``0`` entries disables it."""

    def __init__(
        self, table: str, *, max_entries: int, max_bytes: int, redis_epoch: bool = False
    ) -> None:
        self._table = table
        self._track_epoch = redis_epoch
        self._epoch = 0
        self._tried = asyncio.Event()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._items: OrderedDict[bytes, HotEntry] = OrderedDict()
        self._by_id: dict[int, bytes] = {}
        self._bytes = 0
        self._generation = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self.fence: Fence | None = None
        """Set when lookups read replicas (see the module)."""

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0

    @property
    def serving(self) -> bool:
        """Whether remembered entries may be served now (the listener is connected)."""
        return self._listening

    @property
    def redis_epoch(self) -> int | None:
        """The table's Redis epoch, or ``None`` while the listener is not connected
        (unknown: serve no Redis copy)."""
        return self._epoch if self._listening and self._track_epoch else None

    @property
    def last_redis_epoch(self) -> int:
        """The last epoch known (0 before any): what a new Redis copy is written under.
        An out-of-date one only makes the copy unservable."""
        return self._epoch

    def note_redis_epoch(self, epoch: int) -> None:
        """An epoch read or advanced by this process, or announced by a notice."""
        if epoch > self._epoch:
            self._epoch = epoch
            # Before this process's own advance comes back as a notice: a refill under
            # the new epoch must not copy what a lagging replica still holds.
            self._raise_fence()

    async def wait_first_attempt(self) -> None:
        """Wait until the listener's first connection attempt has ended, connected or
        not (bound it with ``asyncio.timeout``)."""
        await self._tried.wait()

    @property
    def generation(self) -> int:
        """Read before a Postgres lookup; pass to :meth:`remember` after it
        (:data:`FENCED` while a replica may be behind the last notice)."""
        if self.fence is not None and self.fence.up:
            return FENCED
        return self._generation

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> HotEntry | None:
        if not self._listening:
            return None
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry

    def remember(self, key: bytes, entry: HotEntry, generation: int) -> None:
        """Keep ``entry`` unless a notice arrived since ``generation`` was read (the
        row may be gone already) or it is too big."""
        if (
            not self._listening
            or generation != self._generation
            or len(entry.response) > _MAX_ENTRY_BYTES
        ):
            return
        self._drop(key)
        self._items[key] = entry
        self._by_id[entry.entry_id] = key
        self._bytes += len(entry.response)
        while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._items)))

    def forget(self, key: bytes) -> None:
        """Drop the entry of ``key`` (this process just replaced it)."""
        self._generation += 1
        self._drop(key)

    def forget_id(self, entry_id: int) -> None:
        self._generation += 1
        key = self._by_id.get(entry_id)
        if key is not None:
            self._drop(key)

    def clear(self) -> None:
        self._generation += 1
        self._items.clear()
        self._by_id.clear()
        self._bytes = 0

    def _drop(self, key: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old.response)
            if self._by_id.get(old.entry_id) == key:
                del self._by_id[old.entry_id]

    def start(self, conninfo: str, connect_timeout: float) -> None:
        """Start the listener task (idempotent)."""
        if not (self.enabled or self._track_epoch) or (
            self._task is not None and not self._task.done()
        ):
            return
        self._task = asyncio.get_running_loop().create_task(self._listen(conninfo, connect_timeout))

    async def stop(self) -> None:
        self._listening = False
        self.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._tried.clear()  # after the task: its last act sets it
        if self.fence is not None:
            await self.fence.stop()

    def _raise_fence(self) -> None:
        if self.fence is not None:
            self.fence.raise_()

    async def _listen(self, conninfo: str, connect_timeout: float) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=max(1, round(connect_timeout))
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {c}").format(c=sql.Identifier(self._table)))
                    if self._track_epoch:
                        # Read after LISTEN: no advance can fall between the two.
                        cur = await conn.execute(_READ_EPOCH, (self._table,))
                        row = await cur.fetchone()
                        if row is not None:
                            self.note_redis_epoch(int(row[0]))
                    # Anything remembered before this point may have missed a notice.
                    self.clear()
                    self._raise_fence()
                    self._listening = True
                    self._tried.set()
                    async for notice in conn.notifies():
                        payload = notice.payload
                        if payload.isdigit():
                            self.forget_id(int(payload))
                        elif payload.startswith("e") and payload[1:].isdigit():
                            self.note_redis_epoch(int(payload[1:]))
                        else:
                            self.clear()
                        self._raise_fence()
            except psycopg.Error as exc:
                _log.warning(
                    "hot entries and Redis copies paused, their invalidation listener failed (%s)",
                    type(exc).__name__,
                )
            finally:
                self._listening = False
                self._tried.set()
                self.clear()
            await asyncio.sleep(_RECONNECT_PAUSE)
