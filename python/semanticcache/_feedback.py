"""Wrong-answer feedback: take an entry out of every tier at once and keep it as a negative.

An entry reported wrong is deleted in one transaction with the insert of its negative
example, so a report never leaves one without the other. The delete is the cache's
ordinary one: the table's triggers tell every process to drop the entry from its hot
memory, and the entry's Redis copy is tombstoned (or, when Redis does not answer, every
Redis copy is voided by advancing the table's epoch).

A negative keeps what the cache already held: the entry's stored (normalised) text, its
scope and partition, and when it was reported. The lookup text that was answered wrongly
is kept only when the reporter supplies it. ``semcache calibrate`` reads the table
(``semcache_negatives``) later; the admin purge of a scope deletes its negatives too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from semanticcache._guard import StoreCall, Unavailable
from semanticcache._key import db_text
from semanticcache._redis_copies import RedisCopies
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache.errors import ConfigurationError, StorageError

__all__ = ["NEGATIVES_DDL", "Feedback", "delete_negatives", "remove_row"]

NEGATIVES_DDL: Final = (
    """
CREATE TABLE IF NOT EXISTS semcache_negatives (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cache_table text NOT NULL,
    scope text NOT NULL,
    partition bytea NOT NULL,
    stored_text text NOT NULL,
    lookup_text text,
    reported_at timestamptz NOT NULL DEFAULT now()
)
""",
    "CREATE INDEX IF NOT EXISTS semcache_negatives_scope "
    "ON semcache_negatives (cache_table, scope)",
)

_INSERT: Final = (
    "INSERT INTO semcache_negatives (cache_table, scope, partition, stored_text, lookup_text) "
    "VALUES (%s, %s, %s, %s, %s)"
)


class Feedback:
    """Deletes of one entry that may be limited to a scope and may keep a negative."""

    def __init__(
        self,
        store: PgVectorStore,
        store_call: StoreCall,
        redis: RedisCopies,
        ensure_open: Callable[[], Awaitable[None]],
    ) -> None:
        self._store = store
        self._store_call = store_call
        self._redis = redis
        self._ensure_open = ensure_open

    async def remove(
        self,
        entry_id: int,
        *,
        scope: str | None,
        negative: bool,
        lookup_text: str | None = None,
    ) -> bool:
        """Delete entry ``entry_id`` (only if it is of ``scope``, when given), keeping a
        negative when ``negative``; whether it was deleted. Another scope's entry and a
        missing one give the same ``False``. Raises :class:`StorageError` when Postgres
        fails (or its breaker is open, or ``store_timeout`` passes)."""
        if isinstance(entry_id, bool) or not isinstance(entry_id, int):
            raise ConfigurationError("entry_id must be an int")
        for name, value in (("scope", scope), ("lookup_text", lookup_text)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a str")
        table = self._store.table
        keys: list[tuple[bytes, bytes, int]] = []

        async def run() -> bool:
            keys.clear()
            row = await remove_row(
                self._store.pool,
                table,
                entry_id,
                scope=scope,
                negative=negative,
                lookup_text=lookup_text,
            )
            if row is not None:
                keys.append(row)
            return row is not None

        await self._ensure_open()
        deleted = await self._call(run)
        if deleted:
            await self._redis.forget(keys)
        return deleted

    async def _call[T](self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._store_call(make)
        except Unavailable as exc:
            raise StorageError(f"cache delete failed: {exc.describe()}") from exc.cause


async def remove_row(
    pool: AsyncConnectionPool,
    table: str,
    entry_id: int,
    *,
    scope: str | None,
    negative: bool,
    lookup_text: str | None = None,
) -> tuple[bytes, bytes, int] | None:
    """Delete entry ``entry_id`` of ``table`` (only of ``scope``, when given) and, when
    ``negative``, keep its negative, in one transaction; the deleted row's Redis key
    (partition, text digest, id), or ``None`` when nothing was deleted."""
    try:
        async with pool.connection() as conn, conn.transaction():
            row = await _delete(conn, table, entry_id, scope)
            if row is None:
                return None
            partition, digest, found_scope, stored_text = row
            if negative:
                await _keep_negative(conn, table, found_scope, partition, stored_text, lookup_text)
            return partition, digest, entry_id
    except psycopg.Error as exc:
        raise StorageError(f"cache delete failed: {exc}") from exc


async def _delete(
    conn: psycopg.AsyncConnection[Any], table: str, entry_id: int, scope: str | None
) -> tuple[bytes, bytes, str, str] | None:
    query = sql.SQL("DELETE FROM {t} WHERE id = %s").format(t=sql.Identifier(table))
    params: tuple[object, ...] = (entry_id,)
    if scope is not None:
        query += sql.SQL(" AND scope = %s")
        params = (entry_id, db_text(scope))
    query += sql.SQL(" RETURNING partition, text_digest, scope, lookup_text")
    row = await (await conn.execute(query, params)).fetchone()
    if row is None:
        return None
    return bytes(row[0]), bytes(row[1]), str(row[2]), str(row[3])


async def _keep_negative(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    scope: str,
    partition: bytes,
    stored_text: str,
    lookup_text: str | None,
) -> None:
    # Created on the first report (rare): under a lock, as concurrent CREATE ... IF NOT
    # EXISTS of one table can collide.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("semcache_negatives",)
    )
    for statement in NEGATIVES_DDL:
        await conn.execute(statement)
    text = db_text(lookup_text) if lookup_text is not None else None
    await conn.execute(_INSERT, (table, scope, partition, stored_text, text))


async def delete_negatives(conn: psycopg.AsyncConnection[Any], table: str, scope: str) -> int:
    """Delete the negatives of ``scope`` kept for ``table``; how many."""
    found = await (await conn.execute("SELECT to_regclass('semcache_negatives')")).fetchone()
    if found is None or found[0] is None:
        return 0
    cur = await conn.execute(
        "DELETE FROM semcache_negatives WHERE cache_table = %s AND scope = %s",
        (table, db_text(scope)),
    )
    return max(cur.rowcount, 0)
