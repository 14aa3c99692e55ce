"""Every cache table of a database, for ``semcache stats`` and ``semcache purge``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._storage.pgvector import PgVectorStore, find_cache_tables
from semanticcache.errors import StorageError

__all__ = ["CacheTables", "open_tables"]

_CONNECT_TIMEOUT = 10


@dataclass(frozen=True, slots=True)
class CacheTables:
    """The stores of every cache table found (sorted by name), over one small pool."""

    stores: list[PgVectorStore]


@contextlib.asynccontextmanager
async def open_tables(uri: str, only: str | None = None) -> AsyncIterator[CacheTables]:
    """Connect, find the cache tables (only the table ``only`` when given) and yield a
    store for each; the pool is closed on exit."""
    try:
        # One direct connection first: a wrong URI or a down server fails fast with
        # libpq's own message, instead of the pool's retries and timeout.
        async with await psycopg.AsyncConnection.connect(
            uri, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        ) as conn:
            tables = await find_cache_tables(conn)
    except psycopg.OperationalError as exc:
        raise StorageError(f"could not connect to Postgres: {exc}") from exc
    if only is not None:
        tables = [t for t in tables if t.name == only]
        if not tables:
            raise StorageError(f"no cache table named {only!r} in this database")
    pool = AsyncConnectionPool(
        uri,
        min_size=1,
        max_size=2,
        # Nothing prepared by name: the URI may be a transaction-pooling PgBouncer's.
        kwargs={"autocommit": True, "prepare_threshold": None},
        open=False,
        timeout=_CONNECT_TIMEOUT,
    )
    await pool.open(wait=False)
    try:
        yield CacheTables(
            [
                PgVectorStore(pool, model_id=t.name, dimension=t.dimension, table=t.name)
                for t in tables
            ]
        )
    finally:
        await pool.close()
