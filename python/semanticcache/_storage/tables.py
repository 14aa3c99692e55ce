"""Cache table naming and discovery: one table per (model id, dimension).

Vectors of different models never meet; tools that work on every cache table of a
database (``semcache stats`` / ``purge``) find them by their name and columns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

import psycopg

from semanticcache.errors import StorageError

__all__ = [
    "MAX_DIMENSION",
    "MAX_IDENTIFIER",
    "TABLE_PREFIX",
    "CacheTable",
    "find_cache_tables",
    "is_cache_table_name",
    "table_name_for",
]

TABLE_PREFIX: Final = "semcache_entries_"
MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1
MAX_DIMENSION: Final = 2000  # HNSW on vector(n) supports n <= 2000


@dataclass(frozen=True, slots=True)
class CacheTable:
    """A cache table found in a database by :func:`find_cache_tables`."""

    name: str
    """Table name (``semcache_entries_<slug>_<dim>``)."""
    dimension: int
    """Dimension of its ``embedding vector(n)`` column."""


def table_name_for(model_id: str, dimension: int) -> str:
    """``semcache_entries_<slug>_<dim>``: a valid identifier, unique per (model, dim).

    The slug is the lower-cased model id with other characters folded to ``_`` (so ids
    that differ only in punctuation share a table); when it does not fit in 63 bytes it
    is cut and suffixed with a hash of the full model id.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_") or "model"
    suffix = f"_{dimension}"
    room = MAX_IDENTIFIER - len(TABLE_PREFIX) - len(suffix)
    if len(slug) > room:
        tag = hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()
        slug = f"{slug[: room - len(tag) - 1]}_{tag}"
    return f"{TABLE_PREFIX}{slug}{suffix}"


def is_cache_table_name(name: str) -> bool:
    """Whether ``name`` follows the naming rule of :func:`table_name_for`."""
    return (
        isinstance(name, str)
        and name.startswith(TABLE_PREFIX)
        and len(name.encode()) <= MAX_IDENTIFIER
        and re.fullmatch(r"[a-z0-9_]+_[0-9]+", name) is not None
    )


async def find_cache_tables(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[CacheTable]:
    """The cache tables :class:`~semanticcache._storage.pgvector.PgVectorStore` made in the
    schemas on the search path.

    The naming rule (``semcache_entries_<slug>_<dim>``) and the columns every store
    table has (``partition``, ``text_digest``, ``embedding vector(n)``) identify them;
    pgvector keeps the dimension in the column's type modifier.
    """
    query = """
        SELECT c.relname, e.atttypmod
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute e ON e.attrelid = c.oid AND e.attname = 'embedding'
        JOIN pg_type t ON t.oid = e.atttypid AND t.typname = 'vector'
        WHERE c.relkind IN ('r', 'p')
          AND n.nspname = ANY (current_schemas(false))
          AND c.relname LIKE %s
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'partition' AND NOT a.attisdropped)
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'text_digest' AND NOT a.attisdropped)
        ORDER BY c.relname
    """
    # LIKE treats "_" as a wildcard: escape the prefix's underscores.
    pattern = TABLE_PREFIX.replace("_", r"\_") + "%"
    try:
        cur = await conn.execute(query, (pattern,))
        rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"could not list the cache tables: {exc}") from exc
    return [
        CacheTable(str(name), int(str(typmod)))
        for name, typmod in rows
        if is_cache_table_name(str(name)) and 1 <= int(str(typmod)) <= MAX_DIMENSION
    ]
