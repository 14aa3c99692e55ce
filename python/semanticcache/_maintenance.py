"""SemanticCache's operations on what is stored: delete, report wrong, purge, stats."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from semanticcache._background import Background
from semanticcache._entry_token import entry_id_of
from semanticcache._feedback import Feedback
from semanticcache._key import db_text
from semanticcache._results import CacheStats
from semanticcache._settings import CacheSettings
from semanticcache._storage.hot import HotEntries
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache._writes import WritePath
from semanticcache.errors import ConfigurationError

__all__ = ["Maintenance"]


class _Parts(Protocol):
    """What these operations use of the cache."""

    _settings: CacheSettings
    _store: PgVectorStore
    _writes: WritePath
    _feedback: Feedback
    _background: Background
    _hot: HotEntries
    _outcomes: Counter[str]

    @property
    def table(self) -> str: ...

    async def _ensure_open(self) -> None: ...

    def entry_id(self, entry_token: str) -> int | None: ...

    async def report_wrong_id(
        self, entry_id: int, *, scope: str | None = None, lookup_text: str | None = None
    ) -> bool: ...

    async def flush_hits(self) -> None: ...


class Maintenance:
    """The part of :class:`~semanticcache.SemanticCache` that changes or reports on stored
    entries rather than answering lookups."""

    async def delete(self: _Parts, entry_id: int, *, scope: str | None = None) -> bool:
        """Delete one entry by id (``CacheHit.entry_id``), with ``scope`` only if it is
        of that scope; whether it was deleted."""
        if scope is not None:
            deleted = await self._feedback.remove(entry_id, scope=scope, negative=False)
        else:
            if isinstance(entry_id, bool) or not isinstance(entry_id, int):
                raise ConfigurationError("entry_id must be an int")
            await self._ensure_open()
            deleted = await self._writes.delete(entry_id)
        if deleted:
            # This process's own memory: no need to wait for the notice.
            self._hot.forget_id(entry_id)
        return deleted

    def entry_id(self: _Parts, entry_token: str) -> int | None:
        """The id an ``X-Cache-Entry`` token names (made under this cache's
        ``log_digest_key`` for its table); ``None`` for anything else."""
        key = self._settings.effective_log_digest_key
        return entry_id_of(key, self.table, entry_token) if isinstance(entry_token, str) else None

    async def report_wrong(
        self: _Parts, entry_token: str, *, scope: str | None = None, lookup_text: str | None = None
    ) -> bool:
        """:meth:`report_wrong_id` of the entry an ``X-Cache-Entry`` token names (an
        unreadable token: ``False``)."""
        entry_id = self.entry_id(entry_token)
        if entry_id is None:
            return False
        return await self.report_wrong_id(entry_id, scope=scope, lookup_text=lookup_text)

    async def report_wrong_id(
        self: _Parts, entry_id: int, *, scope: str | None = None, lookup_text: str | None = None
    ) -> bool:
        """Take entry ``entry_id`` out of every tier now and keep it as a negative example
        (see :mod:`semanticcache._feedback`); with ``scope``, only an entry of that scope.
        Whether it was deleted: a missing entry and another scope's are both ``False``."""
        deleted = await self._feedback.remove(
            entry_id, scope=scope, negative=True, lookup_text=lookup_text
        )
        if deleted:
            self._hot.forget_id(entry_id)  # as in delete
        return deleted

    async def purge(
        self: _Parts,
        *,
        scope: str | None = None,
        route: str | None = None,
        model: str | None = None,
        partition: bytes | None = None,
        expired: bool = False,
        older_than: float | None = None,
        all: bool = False,  # shadows the builtin: purge(all=True) is the documented spelling
    ) -> int:
        """Delete entries and return how many.

        Selectors combine with AND: ``scope=`` (a :attr:`CacheKey.scope`), ``route=`` (a
        :attr:`CacheKey.route`, less the ``Vary`` values the middleware adds: every
        variant of the route), ``model=`` (a :attr:`CacheKey.model`), ``partition=`` (a
        partition digest), ``expired=True`` (rows past their TTL), ``older_than=``
        (seconds since the entry was stored or last replaced). ``all=True`` empties this
        embedder's table and takes no other selector. At least one selector is required,
        so a bare ``purge()`` never deletes everything by accident.
        """
        if scope is not None and not isinstance(scope, str):
            raise ConfigurationError("scope must be a str")
        for name, value in (("route", route), ("model", model)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty str")
        if partition is not None and not isinstance(partition, bytes):
            raise ConfigurationError("partition must be bytes")
        await self._ensure_open()
        count = await self._writes.purge(
            scope=db_text(scope) if scope is not None else None,
            route=db_text(route) if route is not None else None,
            model=db_text(model) if model is not None else None,
            partition=partition,
            expired=expired,
            older_than=older_than,
            all=all,
        )
        if count:
            self._hot.clear()  # as the notice of a delete statement does, without waiting
        return count

    async def stats(self: _Parts) -> CacheStats:
        """Rows, hits (pending hit counts flushed first), per-scope figures, table size,
        and this process's lookup outcomes."""
        await self._ensure_open()
        await self.flush_hits()
        stored = await self._store.stats()
        return CacheStats(
            rows=stored.rows,
            hits=stored.hits,
            expired_rows=stored.expired_rows,
            table_bytes=stored.table_bytes,
            scopes=stored.scopes,
            lookups=dict(self._outcomes),
            nearest_similarity=stored.nearest_similarity,
        )

    async def flush_hits(self: _Parts) -> None:
        """Write the hit counts and nearest-similarity counts gathered since the last
        flush (done in the background every ``hit_flush_interval`` seconds, and by
        :meth:`close`)."""
        await self._background.flush()
