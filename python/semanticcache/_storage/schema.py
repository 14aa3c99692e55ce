"""The cache table's schema: the extension, table, indexes, lookup function and triggers.

Created idempotently, under an advisory lock, so that concurrent first uses from several
processes do not race.
"""

from __future__ import annotations

import re
from typing import Final

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from semanticcache._storage import lookup_sql
from semanticcache._storage.hot import REDIS_EPOCHS_SQL, TRIGGER_SQL, trigger_statements
from semanticcache._storage.near_misses import NEAR_MISSES_DDL
from semanticcache.errors import StorageError

__all__ = ["ensure_schema"]

# Shared by every cache table: lookups' nearest similarities by (table, outcome, bucket).
# UNLOGGED: counters for tuning, not data; a crash may lose the latest.
SIMILARITY_COUNTS_DDL: Final = """
CREATE UNLOGGED TABLE IF NOT EXISTS semcache_similarity_counts (
    cache_table text NOT NULL,
    outcome text NOT NULL,
    bucket smallint NOT NULL,
    lookups bigint NOT NULL,
    PRIMARY KEY (cache_table, outcome, bucket)
)
"""
# The middleware's single-flight leases across processes (_middleware/singleflight.py).
# UNLOGGED: leases live seconds; skipping the WAL makes a miss's lease insert and release
# cheaper, and a crash only empties the table.
LEASES_DDL: Final = """
CREATE UNLOGGED TABLE IF NOT EXISTS semcache_leases (
    ident bytea PRIMARY KEY,
    token bytea NOT NULL,
    done boolean NOT NULL DEFAULT false,
    expires_at timestamptz NOT NULL
)
"""
# route and model (NULL: the request named none) are kept plain, as scope is, for
# purge(route=, model=): request metadata, not prompt text, and selectable from any process
# or the CLI (a keyed digest would need the same key everywhere). No index on either: a
# purge by them is a rare operator action, and an index would cost every insert.
# fillfactor leaves room on each page so that the hit_count update of a hit is a HOT
# update: otherwise every hit adds a tuple to the HNSW graph, and dead copies of a
# popular vector crowd the ef_search candidates.
_TABLE_DDL: Final = """
CREATE TABLE IF NOT EXISTS {t} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition bytea NOT NULL,
    text_digest bytea NOT NULL,
    scope text NOT NULL DEFAULT '',
    route text NOT NULL DEFAULT '',
    model text,
    lookup_text text NOT NULL,
    embedding vector({dim}) NOT NULL,
    response bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT 'infinity',
    hit_count bigint NOT NULL DEFAULT 0,
    UNIQUE (partition, text_digest)
) WITH (fillfactor = 70)
"""


async def ensure_schema(
    pool: AsyncConnectionPool, table: str, *, dimension: int, m: int, ef_construction: int
) -> bool:
    """Create what ``table`` needs (the ``vector`` extension if the role may); whether
    the server has pgvector's iterative index scans (>= 0.8)."""
    t = sql.Identifier(table)
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (table,))
            await _create_extension(conn)
            await conn.execute(sql.SQL(_TABLE_DDL).format(t=t, dim=sql.Literal(dimension)))
            await _check_columns(conn, t)
            await _store_vectors_in_row(conn, t)
            await conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {idx} ON {t} USING hnsw "
                    "(embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc})"
                ).format(
                    idx=sql.Identifier(f"{table[:55]}_hnsw"),
                    t=t,
                    m=sql.Literal(m),
                    efc=sql.Literal(ef_construction),
                )
            )
            # purge(scope=...) and per-scope stats; scopes are short (MAX_SCOPE_BYTES).
            await conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {idx} ON {t} (scope)").format(
                    idx=sql.Identifier(f"{table[:55]}_scope"), t=t
                )
            )
            # The purge finds expired rows without a scan. Partial, so that a lookup's
            # ``expires_at > now()`` (true of nearly every row) can never use it: the
            # planner of a young table combined a full one with the partition's btree.
            await conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at) "
                    "WHERE expires_at < 'infinity'"
                ).format(idx=sql.Identifier(f"{table[:55]}_expires"), t=t)
            )
            await conn.execute(lookup_sql.function_ddl(table))
            await _create_shared(conn, table)
            cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = await cur.fetchone()
    except psycopg.Error as exc:
        raise StorageError(f"could not create the cache table {table}: {exc}") from exc
    # Iterative index scans keep a partition filter from starving top-k.
    return row is not None and _version(str(row[0])) >= (0, 8)


# The columns _TABLE_DDL declares (one per indented line), what an existing table must have.
_COLUMNS: Final = frozenset(re.findall(r"^    (\w+) ", _TABLE_DDL, re.MULTILINE)) - {"UNIQUE"}


async def _check_columns(
    conn: psycopg.AsyncConnection[tuple[object, ...]], t: sql.Identifier
) -> None:
    # CREATE TABLE IF NOT EXISTS keeps a table of another shape (made by another version,
    # or by hand): refused here, where every write would otherwise fail on its own.
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (t.as_string(conn),),
    )
    missing = sorted(_COLUMNS - {str(row[0]) for row in await cur.fetchall()})
    if missing:
        name = t.as_string(conn)
        raise StorageError(
            f"the cache table {name} lacks the columns {', '.join(missing)}: it was made with "
            f"another schema (by another version of the cache?). Drop it (DROP TABLE {name} "
            "CASCADE; its entries are lost) or use another database"
        )


async def _store_vectors_in_row(
    conn: psycopg.AsyncConnection[tuple[object, ...]], t: sql.Identifier
) -> None:
    # Vectors stay in the row (MAIN), responses and texts go to TOAST first: an exact
    # scan reads ids and vectors from the heap alone (the default, EXTERNAL, moves a
    # wide vector out of line). Altered only when needed: the ALTER locks out lookups.
    cur = await conn.execute(
        "SELECT attstorage FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = 'embedding'",
        (t.as_string(conn),),
    )
    storage = await cur.fetchone()
    if storage is None or storage[0] != "m":
        await conn.execute(
            sql.SQL("ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE MAIN").format(t=t)
        )


async def _create_shared(conn: psycopg.AsyncConnection[tuple[object, ...]], table: str) -> None:
    """The NOTIFY triggers (hot entries of every process: a deleted or replaced entry is
    not served from another process's memory once the notice arrives), the counts, the
    Redis epochs, the single-flight leases and the near misses."""
    # The functions and tables are shared by every cache table: serialise their creation.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("semcache_notify",)
    )
    await conn.execute(TRIGGER_SQL)
    await conn.execute(SIMILARITY_COUNTS_DDL)
    await conn.execute(LEASES_DDL)
    for ddl in NEAR_MISSES_DDL:
        await conn.execute(ddl)
    await conn.execute(REDIS_EPOCHS_SQL)
    await conn.execute(
        "INSERT INTO semcache_redis_epochs VALUES (%s, 1) ON CONFLICT DO NOTHING", (table,)
    )
    # Existing triggers stay: re-creating them at every start would lock the table
    # against the other processes' lookups each time.
    cur = await conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", (table,))
    present = {str(r[0]) for r in await cur.fetchall()}
    for name, statement in trigger_statements(table).items():
        if name not in present:
            await conn.execute(statement)


async def _create_extension(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    if await cur.fetchone() is not None:
        return
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            "the pgvector extension is not enabled in this database and this role may "
            "not create it: run `CREATE EXTENSION vector` as a superuser"
        ) from exc
    except psycopg.Error as exc:
        raise StorageError(
            f"the pgvector extension (vector) is not available on this Postgres server: "
            f"install pgvector >= 0.5 ({str(exc).strip()})"
        ) from exc


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)
