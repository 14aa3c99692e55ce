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

A generation counter closes the race between a lookup that read a row from Postgres and
a notice that arrived before the row was remembered: the row is only remembered if no
notice arrived since the lookup began.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import psycopg
from psycopg import sql

__all__ = ["TRIGGER_SQL", "HotEntries", "HotEntry", "trigger_statements"]

_log = logging.getLogger("semanticcache.cache")

# Entries larger than this are not kept: one big response should not evict many.
_MAX_ENTRY_BYTES: Final = 256 * 1024
_RECONNECT_PAUSE: Final = 1.0

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

    def __init__(self, table: str, *, max_entries: int, max_bytes: int) -> None:
        self._table = table
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._items: OrderedDict[bytes, HotEntry] = OrderedDict()
        self._by_id: dict[int, bytes] = {}
        self._bytes = 0
        self._generation = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0

    @property
    def serving(self) -> bool:
        """Whether remembered entries may be served now (the listener is connected)."""
        return self._listening

    @property
    def generation(self) -> int:
        """Read before a Postgres lookup; pass to :meth:`remember` after it."""
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
        if not self.enabled or (self._task is not None and not self._task.done()):
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

    async def _listen(self, conninfo: str, connect_timeout: float) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=max(1, round(connect_timeout))
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {c}").format(c=sql.Identifier(self._table)))
                    # Anything remembered before this point may have missed a notice.
                    self.clear()
                    self._listening = True
                    async for notice in conn.notifies():
                        if notice.payload.isdigit():
                            self.forget_id(int(notice.payload))
                        else:
                            self.clear()
            except psycopg.Error as exc:
                _log.warning(
                    "hot entries paused, their invalidation listener failed (%s)",
                    type(exc).__name__,
                )
            finally:
                self._listening = False
                self.clear()
            await asyncio.sleep(_RECONNECT_PAUSE)
