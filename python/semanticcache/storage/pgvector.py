"""Cache entries in Postgres + pgvector: exact lookups by digest, cosine search by HNSW.

One table per embedder configuration (model id + dimension), so vectors of different
models never meet. Rows are keyed by (partition digest, lookup-text digest): the unique
btree holds two short digests, never the full text (long prompts would break a btree).
A semantic search only ever looks inside one partition (an SQL equality filter).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool

from semanticcache.errors import ConfigurationError, StorageError
from semanticcache.storage import wire
from semanticcache.storage.hot import (
    REDIS_EPOCHS_SQL,
    TRIGGER_SQL,
    advance_redis_epoch_sql,
    trigger_statements,
)
from semanticcache.storage.wire import ReadStatement

__all__ = [
    "SIMILARITY_BUCKETS",
    "CacheTable",
    "PgVectorStore",
    "ScopeStats",
    "SearchResult",
    "StoreStats",
    "StoredEntry",
    "connection_options",
    "find_cache_tables",
    "similarity_bucket",
    "table_name_for",
]

_TABLE_PREFIX: Final = "semcache_entries_"
SIMILARITY_BUCKETS: Final = 100
"""Buckets of the nearest-similarity counts: bucket ``i`` counts similarities in
``[i / 100, (i + 1) / 100)``; 1.0 falls in the last, negative ones in the first."""
# Shared by every cache table: lookups' nearest similarities by (table, outcome, bucket).
# UNLOGGED: counters for tuning, not data; a crash may lose the latest.
_SIMILARITY_COUNTS_DDL: Final = """
CREATE UNLOGGED TABLE IF NOT EXISTS semcache_similarity_counts (
    cache_table text NOT NULL,
    outcome text NOT NULL,
    bucket smallint NOT NULL,
    lookups bigint NOT NULL,
    PRIMARY KEY (cache_table, outcome, bucket)
)
"""
# _PlanPolicy: the statistics are read again this often.
_PLAN_POLICY_SECONDS: Final = 60.0
# _PlanPolicy: the HNSW scan serves a partition whose rows times its share of the table
# reach this; an exact scan of the partition is cheaper below (benches/bench_plans.py).
_INDEX_MIN_ROWS: Final = 300.0
# reltuples scaled to the heap's current size, as the planner scales it: a table that
# grew since its last ANALYZE is counted at its size now.
_PARTITION_STATS_SQL: Final = (
    "SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples::float8 "
    "/ c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8) "
    "ELSE c.reltuples::float8 END, s.n_distinct::float8, s.most_common_freqs[1]::float8 "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
    "AND s.attname = 'partition' WHERE c.oid = to_regclass($1)"
)
_PARTITION_STATS: Final = ReadStatement(
    _PARTITION_STATS_SQL, [wire.TEXT_OID], [wire.load_float8] * 3
)
_MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1
# The lookup statements' columns: id, response, created_at, similarity, text_digest,
# lookup_text, expires_at.
_LOOKUP_COLUMNS: Final = (
    wire.load_int8,
    wire.load_bytea,
    wire.load_timestamptz,
    wire.load_float8,
    wire.load_bytea,
    wire.load_text,
    wire.load_timestamptz,
)
_MAX_PGVECTOR_HNSW_DIM: Final = 2000  # HNSW on vector(n) supports n <= 2000


class BinaryVector:
    """A vector in pgvector's binary wire format, sent as a binary query parameter.

    ``vector_recv`` reads a 16-bit dimension, 16 unused bits and big-endian float32s:
    packing that is one ``struct.pack`` (microseconds even at 1536 dimensions), where the
    text form costs a ``repr`` per value on the client and a float parse per value on the
    server.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def dimension(self) -> int:
        """How many values the vector holds."""
        return (len(self.data) - 4) // 4

    @classmethod
    def pack(cls, values: Sequence[float]) -> BinaryVector:
        """Pack finite floats (``OverflowError`` beyond float32 range)."""
        n = len(values)
        return cls(struct.pack(f">HH{n}f", n, 0, *values))


class _BinaryVectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: BinaryVector) -> bytes:
        return obj.data


# Global, but for a private class: no other type's adaptation changes. The parameter's
# type is inferred from its ``::vector`` cast, so no OID lookup is needed.
psycopg.adapters.register_dumper(BinaryVector, _BinaryVectorDumper)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A row found by :meth:`PgVectorStore.get_exact` or :meth:`PgVectorStore.search`."""

    id: int
    response: bytes
    created_at: datetime
    similarity: float
    """Cosine similarity to the query, 1 - (embedding <=> query); 1.0 for exact lookups."""
    text_digest: bytes = b""
    """The row's lookup-text digest (set by :meth:`PgVectorStore.search` and
    :meth:`PgVectorStore.lookup`)."""
    lookup_text: str | None = None
    """The row's stored lookup text, for every candidate of a search (the agreement
    check reads it); ``None`` for :meth:`PgVectorStore.get_exact`."""
    expires_at: datetime | None = None
    """When the row expires; ``None``: never, or not fetched (only
    :meth:`PgVectorStore.get_exact` and the exact row of :meth:`PgVectorStore.lookup`
    fetch it)."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What :meth:`PgVectorStore.search` and :meth:`PgVectorStore.lookup` found."""

    matches: list[StoredEntry]
    """The candidates at or above the threshold, best first (or the exact row)."""
    nearest: float | None
    """Similarity of the nearest row of the partition, whether or not it passed the
    threshold (1.0 for the exact row); ``None`` when the partition holds no live row.
    What a miss was missed by: the figure to tune a threshold on."""


@dataclass(frozen=True, slots=True)
class ScopeStats:
    """Row and hit counts of one scope."""

    rows: int
    """Rows stored (expired ones included until purged)."""
    hits: int
    """Hits counted on those rows (flushed counts)."""
    expired_rows: int
    """Rows past their ``expires_at`` and not purged yet."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What :meth:`PgVectorStore.stats` reports."""

    rows: int
    """All rows of the table."""
    hits: int
    """Sum of the hit counts."""
    expired_rows: int
    """Rows past their ``expires_at`` and not purged yet."""
    table_bytes: int
    """``pg_total_relation_size``: heap, indexes (HNSW included) and TOAST."""
    scopes: dict[str, ScopeStats]
    """Per scope (``""`` is the unscoped bucket)."""
    nearest_similarity: dict[str, tuple[int, ...]]
    """Lookups of every process that ran a similarity search (exact hits excluded), by
    outcome: how many had their nearest entry in each of ``SIMILARITY_BUCKETS``
    buckets of similarity (see :func:`similarity_bucket`), as flushed so far."""


def table_name_for(model_id: str, dimension: int) -> str:
    """``semcache_entries_<slug>_<dim>``: a valid identifier, unique per (model, dim).

    The slug is the lower-cased model id with other characters folded to ``_`` (so ids
    that differ only in punctuation share a table); when it does not fit in 63 bytes it
    is cut and suffixed with a hash of the full model id.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_") or "model"
    suffix = f"_{dimension}"
    room = _MAX_IDENTIFIER - len(_TABLE_PREFIX) - len(suffix)
    if len(slug) > room:
        tag = hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()
        slug = f"{slug[: room - len(tag) - 1]}_{tag}"
    return f"{_TABLE_PREFIX}{slug}{suffix}"


CUSTOM: Final = "custom"
INDEX: Final = "index"
EXACT: Final = "exact"


class _PlanPolicy:
    """How a table's searches are planned, from the planner's own statistics: one of

    - ``INDEX``: one cached plan that is the HNSW scan (the statement runs with
      ``enable_sort`` off, see :func:`connection_options`, so that the planner, whose
      costs for ``<=>`` under a sort leave out the distance work on wide vectors, cannot
      pick a sort);
    - ``EXACT``: one cached plan that reads the partition's ids and vectors and keeps
      the nearest (the statement's ordering is not the index's);
    - ``CUSTOM``: the lookup function, which plans the search for each lookup's
      partition.

    A partition is served best by the HNSW scan when its rows times its share of the
    table reach ``_INDEX_MIN_ROWS`` (the scan walks about ``1 / share`` index entries for
    each candidate it keeps, the exact scan reads the partition's rows), else by the
    exact scan. When that choice is the same for the average partition and the largest
    one, one cached plan fits every partition; when they differ (one large partition
    beside many small ones), custom plans. A table without statistics yet is analyzed first
    (Postgres's autovacuum would take up to minutes; the planner's guesses meanwhile
    sort the partition); custom plans while that fails (a role that may not). Checked
    on the first search and then every ``_PLAN_POLICY_SECONDS``, on the search's own
    connection.
    """

    def __init__(self, table: str) -> None:
        self._table = table.encode()
        self._analyze = sql.SQL("ANALYZE {t}").format(t=sql.Identifier(table)).as_bytes()
        self._verdict: str = CUSTOM
        self._due = 0.0

    async def verdict(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> str:
        now = time.monotonic()
        if now >= self._due:
            self._due = now + _PLAN_POLICY_SECONDS
            with contextlib.suppress(psycopg.Error):  # keep the last verdict
                # Wire statements, as the search's own: interrupted, they end at once.
                rows = await _PARTITION_STATS.fetch(conn, (self._table,))
                if not _has_statistics(rows[0] if rows else None):
                    await wire.command(conn, self._analyze)
                    rows = await _PARTITION_STATS.fetch(conn, (self._table,))
                self._verdict = _plan_verdict(rows[0] if rows else None)
        return self._verdict


def similarity_bucket(similarity: float) -> int:
    """The bucket of ``similarity`` among ``SIMILARITY_BUCKETS``."""
    return min(SIMILARITY_BUCKETS - 1, max(0, int(similarity * SIMILARITY_BUCKETS)))


def _has_statistics(row: tuple[Any, ...] | None) -> bool:
    return row is not None and row[0] is not None and row[1] is not None and row[0] > 0


def _plan_verdict(row: tuple[Any, ...] | None) -> str:
    """The policy's verdict on a (rows, n_distinct, largest frequency) row."""
    if row is None or not _has_statistics(row):
        return CUSTOM  # no statistics (or an empty table)
    rows, n_distinct, top = float(row[0]), float(row[1]), row[2]
    # Negative n_distinct: minus the share of the rows that are distinct.
    distinct = max(1.0, n_distinct if n_distinct > 0 else -n_distinct * rows)
    average = rows / distinct
    largest = max(average, float(top) * rows if top is not None else average)
    # A partition of r rows: the HNSW scan walks about rows / r index entries for each
    # it keeps; the exact scan reads r rows.
    small, large = (r * r / rows >= _INDEX_MIN_ROWS for r in (average, largest))
    if small != large:
        return CUSTOM  # no one plan fits both the largest and the average partition
    return INDEX if small else EXACT


class PgVectorStore:
    """Cache rows of one embedder configuration, over a psycopg async pool.

    The pool's connections must be in autocommit mode (``kwargs={"autocommit": True}``);
    methods open their own transactions where they need one. Call :meth:`ensure_schema`
    once before use (idempotent, safe from concurrent processes).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        model_id: str,
        dimension: int,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int | None = None,
        table: str | None = None,
    ) -> None:
        if table is not None and not _is_cache_table_name(table):
            raise ConfigurationError(
                f"table must be a cache table name ({_TABLE_PREFIX}<model>_<dimension>, "
                f"at most {_MAX_IDENTIFIER} bytes), not {table!r}"
            )
        if not 1 <= dimension <= _MAX_PGVECTOR_HNSW_DIM:
            raise ConfigurationError(
                f"embedding dimension must be in 1..{_MAX_PGVECTOR_HNSW_DIM} "
                f"(pgvector HNSW limit), not {dimension}"
            )
        if not 2 <= hnsw_m <= 100:
            raise ConfigurationError(f"hnsw_m must be in 2..100, not {hnsw_m}")
        if not 4 <= hnsw_ef_construction <= 1000 or hnsw_ef_construction < 2 * hnsw_m:
            raise ConfigurationError(
                f"hnsw_ef_construction must be in 4..1000 and >= 2 * hnsw_m, "
                f"not {hnsw_ef_construction}"
            )
        if ef_search is not None and not 1 <= ef_search <= 1000:
            raise ConfigurationError(f"ef_search must be in 1..1000, not {ef_search}")
        self._pool = pool
        self._dimension = dimension
        self._m = hnsw_m
        self._ef_construction = hnsw_ef_construction
        self._ef_search = ef_search
        # An explicit table serves tools that work on every cache table of a database
        # (``semcache stats`` / ``purge``), found by :func:`find_cache_tables`.
        self.table = table if table is not None else table_name_for(model_id, dimension)
        """The table name (``semcache_entries_<slug>_<dim>``)."""
        self._t = sql.Identifier(self.table)
        self._iterative_scan = False
        self._exact_read = ReadStatement(
            sql.SQL(
                # 'infinity' has no Python datetime: NULL stands for "never expires".
                "SELECT id, response, created_at, NULLIF(expires_at, 'infinity') FROM {t} "
                "WHERE partition = $1 AND text_digest = $2 AND expires_at > now()"
            )
            .format(t=self._t)
            .as_bytes(),
            [wire.BYTEA_OID, wire.BYTEA_OID],
            [wire.load_int8, wire.load_bytea, wire.load_timestamptz, wire.load_timestamptz],
        )
        self._response_read = ReadStatement(
            sql.SQL("SELECT response FROM {t} WHERE id = $1 AND expires_at > now()")
            .format(t=self._t)
            .as_bytes(),
            [wire.INT8_OID],
            [wire.load_bytea],
        )
        self._lookup_top1 = self._lookup_statement(top1=True, exact=False)
        self._lookup_topk = self._lookup_statement(top1=False, exact=False)
        self._exact_top1 = self._lookup_statement(top1=True, exact=True)
        self._exact_topk = self._lookup_statement(top1=False, exact=True)
        # Versioned: CREATE OR REPLACE cannot change a function's arguments or result
        # columns, and a process of an earlier version must keep the body it expects
        # (v3 returns rows below the threshold, which v2's callers would serve), so a
        # version that changes either gets a name of its own.
        self._lookup_function = sql.Identifier(f"{self.table[:53]}_lookup_v3")
        self._lookup_skewed = ReadStatement(
            sql.SQL(
                "SELECT id, response, created_at, similarity, text_digest, lookup_text, "
                "expires_at FROM {f}($1, $2, $3, $4, $5, true)"
            )
            .format(f=self._lookup_function)
            .as_bytes(),
            [wire.BYTEA_OID, wire.BYTEA_OID, wire.INFERRED_OID, wire.FLOAT8_OID, wire.INT4_OID],
            _LOOKUP_COLUMNS,
        )
        self._plans = _PlanPolicy(self.table)

    @property
    def dimension(self) -> int:
        """The dimension of the table's vectors."""
        return self._dimension

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool the store uses."""
        return self._pool

    def rebind(self, pool: AsyncConnectionPool) -> None:
        """Use ``pool`` from now on (the owner replaced a closed pool)."""
        self._pool = pool

    @property
    def iterative_scan(self) -> bool:
        """Whether searches use pgvector's iterative index scan (pgvector >= 0.8; known
        after :meth:`ensure_schema`)."""
        return self._iterative_scan

    async def ensure_schema(self) -> None:
        """Create the ``vector`` extension (if the role may), the table and its indexes."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # Serialise concurrent first uses (CREATE ... IF NOT EXISTS still races).
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.table,)
                )
                await self._create_extension(conn)
                # fillfactor leaves room on each page so that the hit_count update of a
                # hit is a HOT update: otherwise every hit adds a tuple to the HNSW graph,
                # and dead copies of a popular vector crowd the ef_search candidates.
                await conn.execute(
                    sql.SQL(
                        """
                        CREATE TABLE IF NOT EXISTS {t} (
                            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            partition bytea NOT NULL,
                            text_digest bytea NOT NULL,
                            scope text NOT NULL DEFAULT '',
                            lookup_text text NOT NULL,
                            embedding vector({dim}) NOT NULL,
                            response bytea NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now(),
                            expires_at timestamptz NOT NULL DEFAULT 'infinity',
                            hit_count bigint NOT NULL DEFAULT 0,
                            UNIQUE (partition, text_digest)
                        ) WITH (fillfactor = 70)
                        """
                    ).format(t=self._t, dim=sql.Literal(self._dimension))
                )
                # Vectors stay in the row (MAIN), responses and texts go to TOAST first: an
                # exact scan reads ids and vectors from the heap alone. With the default
                # (EXTERNAL), a 384-dimension vector beside a response of a few hundred
                # bytes was moved out of line: three buffers a row for every scan.
                # Altered only when needed: the ALTER locks out every lookup.
                cur = await conn.execute(
                    "SELECT attstorage FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                    (self._t.as_string(conn),),
                )
                storage = await cur.fetchone()
                if storage is None or storage[0] != "m":
                    await conn.execute(
                        sql.SQL("ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE MAIN").format(
                            t=self._t
                        )
                    )
                # Tables created by earlier versions: add the newer columns in place.
                await conn.execute(
                    sql.SQL(
                        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT '', "
                        "ADD COLUMN IF NOT EXISTS expires_at timestamptz NOT NULL "
                        "DEFAULT 'infinity'"
                    ).format(t=self._t)
                )
                await conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {idx} ON {t} USING hnsw "
                        "(embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc})"
                    ).format(
                        idx=sql.Identifier(f"{self.table[:55]}_hnsw"),
                        t=self._t,
                        m=sql.Literal(self._m),
                        efc=sql.Literal(self._ef_construction),
                    )
                )
                # purge(scope=...) and per-scope stats; scopes are short (MAX_SCOPE_BYTES).
                await conn.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {idx} ON {t} (scope)").format(
                        idx=sql.Identifier(f"{self.table[:55]}_scope"), t=self._t
                    )
                )
                # The purge finds expired rows without a scan. Partial: only rows that
                # can expire, so a lookup's ``expires_at > now()`` (true of nearly every
                # row) can never use it. Over all rows, the planner of a table without
                # statistics yet (a young one) combined it with the partition's btree
                # (a BitmapAnd) and made a 0.3 ms search cost 1.1 ms. Tables of earlier
                # releases keep their full index of this name.
                await conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at) "
                        "WHERE expires_at < 'infinity'"
                    ).format(idx=sql.Identifier(f"{self.table[:55]}_expires"), t=self._t)
                )
                await conn.execute(self._lookup_function_ddl())
                # Triggers that NOTIFY on changes, for the hot entries of every process
                # (semanticcache.hot): a delete or a replaced entry is never served
                # from another process's memory once the notice arrives.
                # The functions and the counts table are shared by every table:
                # serialise their creation.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("semcache_notify",)
                )
                await conn.execute(TRIGGER_SQL)
                await conn.execute(_SIMILARITY_COUNTS_DDL)
                await conn.execute(REDIS_EPOCHS_SQL)
                await conn.execute(
                    "INSERT INTO semcache_redis_epochs VALUES (%s, 1) ON CONFLICT DO NOTHING",
                    (self.table,),
                )
                # Existing triggers stay: re-creating them at every start would lock
                # the table against the other processes' lookups each time.
                cur = await conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass",
                    (self.table,),
                )
                present = {str(r[0]) for r in await cur.fetchall()}
                for name, statement in trigger_statements(self.table).items():
                    if name not in present:
                        await conn.execute(statement)
                cur = await conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"could not create the cache table {self.table}: {exc}") from exc
        # Iterative index scans (pgvector >= 0.8) keep a partition filter from starving
        # top-k; older servers get the plain scan.
        self._iterative_scan = row is not None and _version(str(row[0])) >= (0, 8)

    async def _create_extension(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
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

    async def put(
        self,
        partition: bytes,
        text_digest: bytes,
        lookup_text: str,
        embedding: Sequence[float] | BinaryVector,
        response: bytes,
        *,
        scope: str = "",
        ttl_seconds: float | None = None,
    ) -> int:
        """Insert or replace the entry for (partition, text_digest); return its id.
        See :meth:`put_entry`."""
        entry = await self.put_entry(
            partition,
            text_digest,
            lookup_text,
            embedding,
            response,
            scope=scope,
            ttl_seconds=ttl_seconds,
        )
        return entry.id

    async def put_entry(
        self,
        partition: bytes,
        text_digest: bytes,
        lookup_text: str,
        embedding: Sequence[float] | BinaryVector,
        response: bytes,
        *,
        scope: str = "",
        ttl_seconds: float | None = None,
    ) -> StoredEntry:
        """Insert or replace the entry for (partition, text_digest); return it (its id,
        ``created_at`` and ``expires_at``: its version, see
        :mod:`semanticcache.storage.redis_tier`).

        A replaced entry gets the new text, vector and response, a fresh ``created_at``
        (later than the one it replaces, so that (id, created_at) orders the versions of
        a row as the row lock ordered the writes) and a hit count of zero.
        ``lookup_text`` and ``scope`` are stored as given (use
        :func:`~semanticcache.key.db_text` for arbitrary strings: ``text`` holds no NUL).
        ``ttl_seconds`` sets ``expires_at`` (``None``: ``'infinity'``, never expires).
        """
        if ttl_seconds is not None and not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ConfigurationError(f"ttl_seconds must be > 0, not {ttl_seconds!r}")
        vector = self._vector_param(embedding)
        query = sql.SQL(
            """
            INSERT INTO {t}
                (partition, text_digest, scope, lookup_text, embedding, response, expires_at)
            VALUES (%s, %s, %s, %s, %s::vector, %s,
                    coalesce(now() + make_interval(secs => %s), 'infinity'))
            ON CONFLICT (partition, text_digest) DO UPDATE SET
                scope = EXCLUDED.scope,
                lookup_text = EXCLUDED.lookup_text,
                embedding = EXCLUDED.embedding,
                response = EXCLUDED.response,
                created_at = greatest(clock_timestamp(), {t}.created_at + interval '1 microsecond'),
                expires_at = EXCLUDED.expires_at,
                hit_count = 0
            RETURNING id, created_at, NULLIF(expires_at, 'infinity')
            """
        ).format(t=self._t)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    query,
                    (partition, text_digest, scope, lookup_text, vector, response, ttl_seconds),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cache put failed: {exc}") from exc
        if row is None:  # RETURNING always yields the row; guard for the type checker
            raise StorageError("cache put returned no row")
        return StoredEntry(row[0], response, row[1], 1.0, text_digest, expires_at=row[2])

    async def advance_redis_epoch(self) -> int:
        """Advance this table's Redis epoch (no Redis copy written before is served
        again, in any process); return the new one."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(advance_redis_epoch_sql(), (self.table, self.table))
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"could not advance the Redis epoch: {exc}") from exc
        if row is None:
            raise StorageError(f"no Redis epoch for {self.table}: its schema is incomplete")
        return int(row[0])

    async def get_exact(self, partition: bytes, text_digest: bytes) -> StoredEntry | None:
        """The entry stored for exactly this (partition, text digest), or None.

        One statement, one index probe on the unique (partition, text_digest) btree.
        """
        try:
            rows = await self._fetch(self._exact_read, (partition, text_digest))
        except psycopg.Error as exc:
            raise StorageError(f"cache exact lookup failed: {exc}") from exc
        if not rows:
            return None
        row = rows[0]
        return StoredEntry(row[0], row[1], row[2], 1.0, text_digest, expires_at=row[3])

    async def get_response(self, entry_id: int) -> bytes | None:
        """The response of the entry ``entry_id`` if it exists and has not expired.

        :meth:`search` ships only the best candidate's response; this fetches another
        candidate's when the best one was not served (the agreement check refused it).
        """
        try:
            rows = await self._fetch(self._response_read, (wire.dump_int8(entry_id),))
        except psycopg.Error as exc:
            raise StorageError(f"cache response fetch failed: {exc}") from exc
        return rows[0][0] if rows else None

    async def search(
        self,
        partition: bytes,
        embedding: Sequence[float] | BinaryVector,
        threshold: float,
        k: int = 1,
    ) -> SearchResult:
        """Stage 1: up to ``k`` entries of ``partition`` with cosine similarity >= ``threshold``,
        and the similarity of the nearest row (passed or not).

        Best first. The HNSW index returns the ``k`` nearest rows of the partition
        (iterative scan, so a partition that holds a small share of the table still gets
        its ``k``). Only the best candidate carries its response, and only if it passes
        the threshold (the others have ``response == b""``), so a large ``k`` or a miss
        does not ship response bodies.

        One round trip, one statement: what :meth:`lookup` sends, with an empty text
        digest, which no row has.
        ``hnsw.ef_search`` and ``hnsw.iterative_scan`` are session settings of the pool's
        connections (see :meth:`connection_options`), not ``SET LOCAL`` per query: a
        per-query ``SET`` needs a multi-statement simple-protocol message, which cannot
        be prepared.
        """
        return await self._run_search(partition, b"", embedding, threshold, k, "similarity search")

    async def lookup(
        self,
        partition: bytes,
        text_digest: bytes,
        embedding: Sequence[float] | BinaryVector,
        threshold: float,
        k: int = 1,
    ) -> SearchResult:
        """The exact row and stage 1 in one round trip: ``matches == [entry]`` when
        (partition, text_digest) holds a live row (``similarity == 1.0``,
        ``text_digest`` equal to the argument), else what :meth:`search` returns.

        One round trip for a semantic hit, where :meth:`get_exact` then :meth:`search`
        take two; but the caller must have the embedding first, so this suits embedders
        that embed cheaply (:attr:`~semanticcache.embedders.base.BaseEmbedder.embeds_cheaply`).
        The statement (see :meth:`_lookup_statement`) holds the exact probe and, run
        only when the probe finds nothing, the search; the table's lookup function
        (:meth:`_lookup_function_ddl`) does the same when the partitions are skewed.
        """
        return await self._run_search(partition, text_digest, embedding, threshold, k, "lookup")

    async def _run_search(
        self,
        partition: bytes,
        text_digest: bytes,
        embedding: Sequence[float] | BinaryVector,
        threshold: float,
        k: int,
        what: str,
    ) -> SearchResult:
        if not 1 <= k <= 1000:
            raise ConfigurationError(f"k must be in 1..1000, not {k}")
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ConfigurationError(f"threshold must be in [0, 1], not {threshold!r}")
        params = [
            partition,
            text_digest,
            self._vector_param(embedding).data,
            wire.dump_float8(threshold),
            wire.dump_int4(k),
        ]
        try:
            conn = await self._pool.getconn()  # see _fetch
            try:
                verdict = await self._plans.verdict(conn)
                if verdict == CUSTOM:
                    rows = await self._lookup_skewed.fetch(conn, params)
                elif verdict == INDEX:
                    if k == 1:
                        rows = await self._lookup_top1.fetch(conn, params[:4])
                    else:
                        rows = await self._lookup_topk.fetch(conn, params)
                elif k == 1:
                    rows = await self._exact_top1.fetch(conn, params[:4])
                else:
                    rows = await self._exact_topk.fetch(conn, params)
            finally:
                await self._pool.putconn(conn)
        except psycopg.Error as exc:
            raise StorageError(f"cache {what} failed: {exc}") from exc
        if len(rows) == 1:
            # The common case (top-1, or an exact row): no sort, one object.
            r = rows[0]
            entry = StoredEntry(
                r[0], r[1] if r[1] is not None else b"", r[2], r[3], r[4], r[5], r[6]
            )
            # The same float8 comparison as the server's, which chose whether to send
            # the response.
            return SearchResult([entry] if entry.similarity >= threshold else [], entry.similarity)
        if not rows:
            return SearchResult([], None)
        found = [
            StoredEntry(r[0], r[1] if r[1] is not None else b"", r[2], r[3], r[4], r[5], r[6])
            for r in rows
        ]
        # The server sorted them, but relaxed_order and float ties deserve a stable order.
        found.sort(key=lambda e: (-e.similarity, e.id))
        return SearchResult([e for e in found if e.similarity >= threshold], found[0].similarity)

    async def _fetch(
        self, statement: ReadStatement, params: Sequence[bytes | None]
    ) -> list[tuple[Any, ...]]:
        """Run one read statement of the lookup path (see :mod:`~semanticcache.storage.wire`);
        its rows.

        ``getconn`` / ``putconn`` rather than ``pool.connection()``: the context manager
        also enters the connection's own context (a commit step under the connection
        lock, for an autocommit connection), which made a checkout cost three times as
        much; one autocommit statement needs none of it. ``putconn`` discards a
        connection returned mid-query (a lookup cancelled by its timeout), as the
        context manager does.
        """
        conn = await self._pool.getconn()
        try:
            return await statement.fetch(conn, params)
        finally:
            await self._pool.putconn(conn)

    async def add_hits(self, counts: Mapping[int, int]) -> None:
        """Add ``counts[id]`` to the hit count of each entry, in one statement."""
        if not counts:
            return
        ids, hits = list(counts), list(counts.values())
        query = sql.SQL(
            "UPDATE {t} SET hit_count = hit_count + v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE {t}.id = v.id"
        ).format(t=self._t)
        try:
            async with self._pool.connection() as conn:
                await conn.execute(query, (ids, hits))
        except psycopg.Error as exc:
            raise StorageError(f"cache hit count update failed: {exc}") from exc

    async def add_nearest(self, counts: Mapping[tuple[str, int], int]) -> None:
        """Add ``counts[(outcome, bucket)]`` lookups to the table's nearest-similarity
        counts, in one statement."""
        if not counts:
            return
        outcomes = [outcome for outcome, _ in counts]
        buckets = [bucket for _, bucket in counts]
        query = (
            "INSERT INTO semcache_similarity_counts AS c (cache_table, outcome, bucket, lookups) "
            "SELECT %s, v.o, v.b, v.n "
            "FROM unnest(%s::text[], %s::smallint[], %s::bigint[]) AS v(o, b, n) "
            "ON CONFLICT (cache_table, outcome, bucket) "
            "DO UPDATE SET lookups = c.lookups + EXCLUDED.lookups"
        )
        try:
            async with self._pool.connection() as conn:
                await conn.execute(query, (self.table, outcomes, buckets, list(counts.values())))
        except psycopg.Error as exc:
            raise StorageError(f"cache similarity count update failed: {exc}") from exc

    async def delete(
        self, entry_id: int, *, keys: list[tuple[bytes, bytes, int]] | None = None
    ) -> bool:
        """Delete one entry by id; whether it existed. ``keys`` (when given) receives the
        deleted row's (partition, text digest, id)."""
        query = sql.SQL("DELETE FROM {t} WHERE id = %s").format(t=self._t)
        return await self._delete(query, (entry_id,), keys) > 0

    async def purge(
        self,
        *,
        scope: str | None = None,
        partition: bytes | None = None,
        expired: bool = False,
        older_than: float | None = None,
        all: bool = False,  # shadows the builtin: purge(all=True) is the documented spelling
        keys: list[tuple[bytes, bytes, int]] | None = None,
    ) -> int:
        """Delete entries; return how many. See :meth:`SemanticCache.purge`. ``keys``
        (when given) receives each deleted row's (partition, text digest, id)."""
        if older_than is not None and not (math.isfinite(older_than) and older_than >= 0):
            raise ConfigurationError(f"older_than must be >= 0 seconds, not {older_than!r}")
        if all:
            if scope is not None or partition is not None or expired or older_than is not None:
                raise ConfigurationError("purge(all=True) takes no other selector")
            return await self._delete(sql.SQL("DELETE FROM {t}").format(t=self._t), (), keys)
        conditions: list[sql.Composable] = []
        params: list[object] = []
        if scope is not None:
            conditions.append(sql.SQL("scope = %s"))
            params.append(scope)
        if partition is not None:
            conditions.append(sql.SQL("partition = %s"))
            params.append(partition)
        if expired:
            conditions.append(sql.SQL("expires_at <= now() AND expires_at < 'infinity'"))
        if older_than is not None:
            # created_at is reset when an entry is replaced: age counts from the last put.
            conditions.append(sql.SQL("created_at < now() - make_interval(secs => %s)"))
            params.append(older_than)
        if not conditions:
            raise ConfigurationError(
                "purge needs a selector: scope=, partition=, expired=True, older_than= or all=True"
            )
        query = sql.SQL("DELETE FROM {t} WHERE {c}").format(
            t=self._t, c=sql.SQL(" AND ").join(conditions)
        )
        return await self._delete(query, tuple(params), keys)

    async def purge_expired_batch(self, limit: int) -> int:
        """Delete up to ``limit`` expired rows; return how many.

        ``SKIP LOCKED``: several processes purging at once take different rows instead of
        queueing on the same ones.
        """
        query = sql.SQL(
            # "< 'infinity'": implied by the first condition, but the planner needs it
            # spelled out to use the partial expiry index.
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= now() "
            "AND expires_at < 'infinity' ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(t=self._t)
        return await self._delete(query, (limit,))

    async def stats(self) -> StoreStats:
        """Rows, hits and expired rows per scope, and the table's size on disk."""
        query = sql.SQL(
            "SELECT scope, count(*), coalesce(sum(hit_count), 0)::bigint, "
            "count(*) FILTER (WHERE expires_at <= now()) FROM {t} GROUP BY scope"
        ).format(t=self._t)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query)
                rows = await cur.fetchall()
                cur = await conn.execute(
                    "SELECT pg_total_relation_size(%s::regclass), "
                    "to_regclass('semcache_similarity_counts') IS NOT NULL",
                    (self._t.as_string(conn),),
                )
                size_row = await cur.fetchone()
                counted: list[tuple[Any, ...]] = []
                if size_row is not None and size_row[1]:  # absent before any lookup ran
                    cur = await conn.execute(
                        "SELECT outcome, bucket, lookups FROM semcache_similarity_counts "
                        "WHERE cache_table = %s",
                        (self.table,),
                    )
                    counted = await cur.fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cache stats failed: {exc}") from exc
        nearest: dict[str, list[int]] = {}
        for outcome, bucket, lookups in counted:
            if 0 <= bucket < SIMILARITY_BUCKETS:
                nearest.setdefault(str(outcome), [0] * SIMILARITY_BUCKETS)[bucket] += int(lookups)
        scopes = {
            str(r[0]): ScopeStats(rows=int(r[1]), hits=int(r[2]), expired_rows=int(r[3]))
            for r in rows
        }
        return StoreStats(
            rows=sum(v.rows for v in scopes.values()),
            hits=sum(v.hits for v in scopes.values()),
            expired_rows=sum(v.expired_rows for v in scopes.values()),
            table_bytes=int(size_row[0]) if size_row is not None else 0,
            scopes=scopes,
            nearest_similarity={k: tuple(v) for k, v in sorted(nearest.items())},
        )

    async def _delete(
        self,
        query: sql.Composed,
        params: tuple[object, ...],
        keys: list[tuple[bytes, bytes, int]] | None = None,
    ) -> int:
        if keys is not None:
            query = query + sql.SQL(" RETURNING partition, text_digest, id")
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                if keys is None:
                    return max(cur.rowcount, 0)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cache delete failed: {exc}") from exc
        keys.extend((bytes(r[0]), bytes(r[1]), int(r[2])) for r in rows)
        return len(rows)

    def connection_options(self) -> str:
        """libpq ``options`` the pool's connections need: see :func:`connection_options`."""
        return connection_options(self._ef_search)

    def _lookup_statement(self, *, top1: bool, exact: bool) -> ReadStatement:
        """The lookup path's one statement: the exact probe, and the stage-1 search run
        only if the probe found nothing. Parameters: partition, text digest, vector,
        threshold (and k, unless ``top1``).

        The search (the ``UNION ALL``'s second branch) sits under a one-time
        ``NOT EXISTS`` filter on the probe's CTE: an exact hit never starts the HNSW scan.
        Every one of the k nearest rows comes back, passed or not (the nearest
        similarity of a miss is worth reporting; the caller filters), but only the best
        row carries its response, and only if it passes the threshold: a miss or a large
        k ships no bodies. Every candidate's lookup text comes back: the agreement check
        may pass over the best. The exact row alone carries its expiry (for the hot
        entries).

        The scan itself yields only ``id`` and the distance, and the k rows it keeps are
        joined back by primary key for their other columns: where Postgres sorts the
        partition (a small table or partition), each scanned row then carries two
        columns, not seven (at 1,000 rows, 45 us less a lookup, 0.12x of the whole
        query). ORDER BY the distance's alias is still the index's ordering operator,
        and the similarity is derived after the LIMIT: the distance is computed once per
        row. With k = 1, a literal ``LIMIT 1`` (the plan for one row exactly) and no
        window or sort above the scan.

        Postgres caches its plan per connection (generic: no planning per lookup). When
        the partitions are skewed (:class:`_PlanPolicy`), the search must be planned for
        each lookup's partition, and this statement planned whole at each call cost 120
        to 170 us more than the table's lookup function (:meth:`_lookup_function_ddl`),
        which the lookups use then. Otherwise the function costs 40 to 80 us a lookup
        more than this statement (1,000 and 100,000 rows).

        Two versions, one for each of the plan policy's verdicts: the index's (its
        ordering is the HNSW index's, and the pool's connections run with ``enable_sort``
        off, so the plan is the HNSW scan), and with ``exact``, one whose ordering the
        index cannot serve (``+ 0``): the partition's rows are read (heap only: the
        vectors are stored in the row) and the nearest kept by a top-N sort.
        """
        probe = sql.SQL(
            "SELECT id, response, created_at, 1.0::float8 AS similarity, text_digest, "
            "lookup_text, NULLIF(expires_at, 'infinity') AS expires_at "
            "FROM {t} WHERE partition = $1 AND text_digest = $2 AND expires_at > now()"
        ).format(t=self._t)
        nearest = sql.SQL(
            "SELECT id, {distance} AS distance FROM {t} "
            "WHERE partition = $1 AND expires_at > now() ORDER BY distance LIMIT {k}"
        ).format(
            t=self._t,
            k=sql.SQL("1" if top1 else "$5"),
            distance=sql.SQL("(embedding <=> $3) + 0" if exact else "embedding <=> $3"),
        )
        columns = sql.SQL(
            "e.id, CASE WHEN {first}1 - n.distance >= $4 THEN e.response END, e.created_at, "
            "1 - n.distance, e.text_digest, e.lookup_text, NULL::timestamptz "
            "FROM ({nearest}) AS n JOIN {t} AS e ON e.id = n.id "
            "WHERE NOT EXISTS (SELECT FROM exact)"
        )
        if top1:
            search = sql.SQL("SELECT {columns}").format(
                columns=columns.format(first=sql.SQL(""), nearest=nearest, t=self._t)
            )
        else:
            search = sql.SQL(
                "(SELECT {columns} "
                # The client's order (similarity, then id), which ties on similarity
                # where distances differ in their last bit: the best row it sees is
                # the one that carries the response.
                "WINDOW w AS (ORDER BY 1 - n.distance DESC, e.id) "
                "ORDER BY 1 - n.distance DESC, e.id)"
            ).format(
                columns=columns.format(
                    first=sql.SQL("row_number() OVER w = 1 AND "), nearest=nearest, t=self._t
                )
            )
        query = sql.SQL("WITH exact AS ({probe}) SELECT * FROM exact UNION ALL {search}").format(
            probe=probe, search=search
        )
        types = [wire.BYTEA_OID, wire.BYTEA_OID, wire.INFERRED_OID, wire.FLOAT8_OID]
        return ReadStatement(
            query.as_bytes(), types if top1 else [*types, wire.INT4_OID], _LOOKUP_COLUMNS
        )

    def _search_sql(self, params: Mapping[str, sql.Composable], *, top1: bool) -> sql.Composed:
        """The stage-1 query of the lookup function, over its arguments ``params``
        (``v``, ``p``, ``k``, ``th``).

        The inner query is the plain index-ordered top-k (what HNSW can serve). Every
        one of the k rows comes back, passed or not (the nearest similarity of a miss
        is worth reporting; the caller filters), but only the best row carries its
        response, and only if it passes the threshold: a miss or a large k ships no
        bodies. Every candidate's lookup text comes back: the agreement check may pass
        over the best. With k = 1 there is no window and no sort above the index scan.
        The distance is computed once per row: ORDER BY its alias is still the index's
        ordering operator, and the similarity is derived from it after the LIMIT
        (selecting ``1 - (embedding <=> v)`` beside ``ORDER BY embedding <=> v``
        computed it twice per row scanned). The last column is a NULL ``expires_at``:
        the function's row type, where only the exact row carries it (for the hot
        entries).
        """
        columns: sql.Composable
        if top1:
            columns = sql.SQL(
                "id, CASE WHEN similarity >= {th} THEN response END, created_at, similarity, "
                "text_digest, lookup_text, NULL::timestamptz"
            ).format(th=params["th"])
            window = sql.SQL("")
        else:
            columns = sql.SQL(
                "id, CASE WHEN row_number() OVER w = 1 AND similarity >= {th} THEN response END, "
                "created_at, similarity, text_digest, lookup_text, NULL::timestamptz"
            ).format(th=params["th"])
            window = sql.SQL(
                "WINDOW w AS (ORDER BY similarity DESC, id) ORDER BY similarity DESC, id"
            )
        return sql.SQL(
            """
            SELECT {columns}
            FROM (
                SELECT id, response, created_at, text_digest, lookup_text,
                       1 - distance AS similarity
                FROM (
                    SELECT id, response, created_at, text_digest, lookup_text,
                           embedding <=> {v} AS distance
                    FROM {t}
                    WHERE partition = {p} AND expires_at > now()
                    ORDER BY distance
                    LIMIT {k}
                ) AS nearest
            ) AS candidates
            {window}
            """
        ).format(
            columns=columns,
            window=window,
            t=self._t,
            v=params["v"],
            p=params["p"],
            # A literal LIMIT for top-1: the plan for k = 1 exactly (the function plans
            # the search at each call): 20 to 30 us less than with a parameter.
            k=sql.SQL("1") if top1 else params["k"],
        )

    def _lookup_function_ddl(self) -> sql.Composed:
        """``CREATE OR REPLACE FUNCTION <table>_lookup_v3(...)``: the exact probe, then,
        only if it found nothing, the stage-1 search; the lookups of a table whose
        partitions are skewed (see :class:`_PlanPolicy`).

        There the search must be planned for its partition at each call: a generic
        plan (one for every partition, sized as the average one) sorts a large
        partition in full beside many small ones, where it needs the HNSW scan (seen at
        6,000 rows of 9,000: 1.7 ms, growing with the partition;
        tests/storage/test_pgvector.py). PL/pgSQL caches each query's plan separately:
        the probe's is generic (the same for every partition), and with ``_custom``
        ``plan_cache_mode`` is ``force_custom_plan`` for the search alone, and restored
        (this version always passes true; the argument stays for processes of the
        previous one, which call the function for every lookup with their verdict).
        The plain lookup statement (:meth:`_lookup_statement`) planned whole at each
        call cost 120 to 170 us more (its CTE, union and join are planned with the
        search). An exact hit returns before the search starts. ``STABLE``: both
        queries see the caller's snapshot. Tried and dropped: ``EXECUTE ... USING`` for
        the search (custom by construction, but parsed at each call: 60 us more a
        semantic hit) and ``SET plan_cache_mode`` on the whole function (the probe
        planned at each call too: 60 us more an exact hit). The search is
        :meth:`_search_sql`'s, which scans all its columns (a join back by primary key,
        as in the plain statement, would cost more planning than it saves in a sort).
        """
        args = {"v": sql.SQL("_v"), "p": sql.SQL("_p"), "k": sql.SQL("_k"), "th": sql.SQL("_th")}
        return sql.SQL(
            """
            CREATE OR REPLACE FUNCTION {f}(
                _p bytea, _d bytea, _v vector, _th double precision, _k integer,
                _custom boolean
            )
            RETURNS TABLE (
                id bigint, response bytea, created_at timestamptz,
                similarity double precision, text_digest bytea, lookup_text text,
                expires_at timestamptz
            )
            LANGUAGE plpgsql STABLE
            AS $semcache$
            #variable_conflict use_column
            DECLARE
                _mode text := current_setting('plan_cache_mode');
                _sort text := current_setting('enable_sort');
            BEGIN
                RETURN QUERY
                    SELECT id, response, created_at, 1.0::double precision, text_digest,
                           lookup_text, NULLIF(expires_at, 'infinity')
                    FROM {t}
                    WHERE partition = _p AND text_digest = _d AND expires_at > now();
                IF FOUND THEN
                    RETURN;
                END IF;
                IF _custom THEN
                    PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
                    -- The planner's choice for each partition (connection_options
                    -- turns sorts off for the cached plans).
                    PERFORM set_config('enable_sort', 'on', true);
                END IF;
                IF _k = 1 THEN
                    RETURN QUERY {top1};
                ELSE
                    RETURN QUERY {topk};
                END IF;
                IF _custom THEN
                    PERFORM set_config('plan_cache_mode', _mode, true);
                    PERFORM set_config('enable_sort', _sort, true);
                END IF;
            END
            $semcache$
            """
        ).format(
            f=self._lookup_function,
            t=self._t,
            top1=self._search_sql(args, top1=True),
            topk=self._search_sql(args, top1=False),
        )

    def _vector_param(self, embedding: Sequence[float] | BinaryVector) -> BinaryVector:
        if isinstance(embedding, BinaryVector):
            # Packed by a caller that has checked the values (SemanticCache does).
            if embedding.dimension != self._dimension:
                raise ConfigurationError(
                    f"embedding has {embedding.dimension} dimensions, the table "
                    f"{self.table} stores {self._dimension}"
                )
            return embedding
        if len(embedding) != self._dimension:
            raise ConfigurationError(
                f"embedding has {len(embedding)} dimensions, the table {self.table} "
                f"stores {self._dimension}"
            )
        try:
            values = [float(x) for x in embedding]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError("embedding contains a value that is not a number") from exc
        if not all(map(math.isfinite, values)):
            raise ConfigurationError("embedding contains NaN or infinity")
        try:
            return BinaryVector.pack(values)
        except OverflowError as exc:
            raise ConfigurationError("embedding holds a value beyond float32 range") from exc


@dataclass(frozen=True, slots=True)
class CacheTable:
    """A cache table found in a database by :func:`find_cache_tables`."""

    name: str
    """Table name (``semcache_entries_<slug>_<dim>``)."""
    dimension: int
    """Dimension of its ``embedding vector(n)`` column."""


def _is_cache_table_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and name.startswith(_TABLE_PREFIX)
        and len(name.encode()) <= _MAX_IDENTIFIER
        and re.fullmatch(r"[a-z0-9_]+_[0-9]+", name) is not None
    )


async def find_cache_tables(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[CacheTable]:
    """The cache tables :class:`PgVectorStore` made in the schemas on the search path.

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
    pattern = _TABLE_PREFIX.replace("_", r"\_") + "%"
    try:
        cur = await conn.execute(query, (pattern,))
        rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"could not list the cache tables: {exc}") from exc
    return [
        CacheTable(str(name), int(str(typmod)))
        for name, typmod in rows
        if _is_cache_table_name(str(name)) and 1 <= int(str(typmod)) <= _MAX_PGVECTOR_HNSW_DIM
    ]


def connection_options(ef_search: int | None) -> str:
    """libpq ``options`` for a store's pool connections: the HNSW search settings.

    ``-c hnsw.iterative_scan=relaxed_order`` (pgvector >= 0.8; older servers drop the
    unknown setting with a warning in their log), ``-c enable_sort=off`` (the search's
    cached plan is the HNSW scan where the store's plan policy chose it; its exact
    scans and the lookup function are unaffected) and ``-c hnsw.ef_search=N`` when
    ``ef_search`` is set. They apply to every query of the connection, so give the store a
    pool of its own. Without them, searches still return correct rows, but a small
    partition of a large table may get fewer than ``k``.
    """
    options = ["-c hnsw.iterative_scan=relaxed_order", "-c enable_sort=off"]
    if ef_search is not None:
        options.append(f"-c hnsw.ef_search={ef_search}")
    return " ".join(options)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)
