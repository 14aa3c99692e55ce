"""Near misses in Postgres (``semcache_near_misses``), shared by every process of every
cache table: what the admin dashboard, ``GET {admin}/near-misses`` and ``semcache
near-misses`` list.

A row holds digests only, as the process that saw the near miss made them: the keyed
digest of the lookup text, the candidate's entry token, the similarity, the reason and
the time, with the cache table and the lookup's scope (request metadata, kept plain as
the cache table keeps it, so that a scope's admin token is shown its own alone). Never
the text. Each write keeps the most recent :data:`KEPT` of its cache table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._key import db_text
from semanticcache.errors import StorageError

__all__ = ["KEPT", "NEAR_MISSES_DDL", "NearMiss", "read", "write"]

KEPT: Final = 1000
"""Near misses kept per cache table (the most recent)."""

# UNLOGGED: diagnostics, not data; skipping the WAL makes the writes cheaper, and a crash
# only empties the table. The index serves the newest-first reads and the prune.
NEAR_MISSES_DDL: Final = (
    """
CREATE UNLOGGED TABLE IF NOT EXISTS semcache_near_misses (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cache_table text NOT NULL,
    scope text NOT NULL,
    at timestamptz NOT NULL,
    text_digest text NOT NULL,
    entry text,
    similarity double precision NOT NULL,
    reason text NOT NULL
)
""",
    "CREATE INDEX IF NOT EXISTS semcache_near_misses_recent "
    "ON semcache_near_misses (cache_table, id)",
)

_INSERT: Final = """
INSERT INTO semcache_near_misses
    (cache_table, scope, at, text_digest, entry, similarity, reason)
SELECT %s, s, to_timestamp(a), d, e, sim, r
FROM unnest(%s::text[], %s::float8[], %s::text[], %s::text[], %s::float8[], %s::text[])
    AS u(s, a, d, e, sim, r)
"""
# Everything older than the table's KEPT most recent rows: two index range scans.
_PRUNE: Final = """
DELETE FROM semcache_near_misses WHERE cache_table = %s AND id <= (
    SELECT id FROM semcache_near_misses WHERE cache_table = %s
    ORDER BY id DESC OFFSET %s LIMIT 1
)
"""
_READ: Final = (
    "SELECT extract(epoch FROM at), scope, text_digest, entry, similarity, reason "
    "FROM semcache_near_misses WHERE cache_table = %s"
)


@dataclass(frozen=True, slots=True)
class NearMiss:
    """One near miss (digests only)."""

    at: float
    """When (Unix time)."""
    scope: str
    """The lookup's scope."""
    text_digest: str
    """Keyed digest of the lookup text (``SEMANTIC_CACHE_LOG_DIGEST_KEY``)."""
    entry: str | None
    """The candidate's entry token (as ``X-Cache-Entry`` names it)."""
    similarity: float
    """Similarity of the candidate to the lookup."""
    reason: str
    """The miss's reason: ``miss`` (below the gate) or stage 2's refusal."""


async def write(
    pool: AsyncConnectionPool, table: str, near: Sequence[NearMiss], *, keep: int = KEPT
) -> None:
    """Insert ``near`` for ``table`` in one statement, then delete the table's rows
    older than its ``keep`` most recent. Raises :class:`StorageError`."""
    if not near:
        return
    columns = (
        [db_text(n.scope) for n in near],
        [n.at for n in near],
        [n.text_digest for n in near],
        [n.entry for n in near],
        [n.similarity for n in near],
        [n.reason for n in near],
    )
    try:
        async with pool.connection() as conn:
            await conn.execute(_INSERT, (table, *columns))
            await conn.execute(_PRUNE, (table, table, keep))
    except psycopg.Error as exc:
        raise StorageError(f"near-miss write failed: {exc}") from exc


async def read(
    conn: psycopg.AsyncConnection[Any], table: str, *, scope: str | None, limit: int
) -> list[NearMiss]:
    """The ``limit`` most recent near misses of ``table`` (of ``scope`` alone, when
    given), newest first."""
    query = _READ
    params: tuple[object, ...] = (table,)
    if scope is not None:
        query += " AND scope = %s"
        params = (table, db_text(scope))
    cur = await conn.execute(query + " ORDER BY at DESC, id DESC LIMIT %s", (*params, limit))
    return [
        NearMiss(float(r[0]), str(r[1]), str(r[2]), r[3], float(r[4]), str(r[5]))
        for r in await cur.fetchall()
    ]
