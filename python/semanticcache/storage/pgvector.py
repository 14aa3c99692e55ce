"""Cache entries in Postgres + pgvector: exact lookups by digest, cosine search by HNSW.

One table per embedder configuration (model id + dimension), so vectors of different
models never meet. Rows are keyed by (partition digest, lookup-text digest): the unique
btree holds two short digests, never the full text (long prompts would break a btree).
A semantic search only ever looks inside one partition (an SQL equality filter).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool

from semanticcache.errors import ConfigurationError, StorageError

__all__ = [
    "PgVectorStore",
    "ScopeStats",
    "StoreStats",
    "StoredEntry",
    "connection_options",
    "table_name_for",
]

_TABLE_PREFIX: Final = "semcache_entries_"
_MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1
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
    """The row's lookup-text digest (set by :meth:`PgVectorStore.search`)."""
    lookup_text: str = ""
    """The row's stored lookup text (set by :meth:`PgVectorStore.search`), for the
    agreement check."""


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
    ) -> None:
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
        self.table = table_name_for(model_id, dimension)
        """The table name (``semcache_entries_<slug>_<dim>``)."""
        self._t = sql.Identifier(self.table)
        self._iterative_scan = False
        self._exact_query = self._build_exact_query()
        self._search_query = self._build_search_query()
        self._search_top1_query = self._build_search_top1_query()

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
                # The purge finds expired rows without a scan.
                await conn.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at)").format(
                        idx=sql.Identifier(f"{self.table[:55]}_expires"), t=self._t
                    )
                )
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
        embedding: Sequence[float],
        response: bytes,
        *,
        scope: str = "",
        ttl_seconds: float | None = None,
    ) -> int:
        """Insert or replace the entry for (partition, text_digest); return its id.

        A replaced entry gets the new text, vector and response, a fresh ``created_at``
        and a hit count of zero. ``lookup_text`` and ``scope`` are stored as given (use
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
                created_at = now(),
                expires_at = EXCLUDED.expires_at,
                hit_count = 0
            RETURNING id
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
        entry_id: int = row[0]
        return entry_id

    async def get_exact(self, partition: bytes, text_digest: bytes) -> StoredEntry | None:
        """The entry stored for exactly this (partition, text digest), or None.

        One statement, one index probe on the unique (partition, text_digest) btree.
        """
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(self._exact_query, (partition, text_digest), prepare=True)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cache exact lookup failed: {exc}") from exc
        if row is None:
            return None
        return StoredEntry(id=row[0], response=bytes(row[1]), created_at=row[2], similarity=1.0)

    async def get_response(self, entry_id: int) -> bytes | None:
        """The response of the entry ``entry_id`` if it exists and has not expired.

        :meth:`search` ships only the best candidate's response; this fetches another
        candidate's when the best one was not served (the agreement check refused it).
        """
        query = sql.SQL("SELECT response FROM {t} WHERE id = %s AND expires_at > now()").format(
            t=self._t
        )
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, (entry_id,), prepare=True)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cache response fetch failed: {exc}") from exc
        return None if row is None else bytes(row[0])

    async def search(
        self,
        partition: bytes,
        embedding: Sequence[float],
        threshold: float,
        k: int = 1,
    ) -> list[StoredEntry]:
        """Stage 1: up to ``k`` entries of ``partition`` with cosine similarity >= ``threshold``.

        Best first. The HNSW index returns the ``k`` nearest rows of the partition
        (iterative scan, so a partition that holds a small share of the table still gets
        its ``k``); the threshold is applied to them on the server. Only the best
        candidate carries its response (the others have ``response == b""``), so a large
        ``k`` does not ship ``k`` response bodies.

        One round trip, one prepared statement. ``hnsw.ef_search`` and
        ``hnsw.iterative_scan`` are session settings of the pool's connections (see
        :meth:`connection_options`), not ``SET LOCAL`` per query: a per-query ``SET`` needs
        a multi-statement simple-protocol message, which cannot be prepared, and planning
        the query every time cost more than the search itself on small tables.
        """
        if not 1 <= k <= 1000:
            raise ConfigurationError(f"k must be in 1..1000, not {k}")
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ConfigurationError(f"threshold must be in [0, 1], not {threshold!r}")
        vector = self._vector_param(embedding)
        params = {"v": vector, "p": partition, "k": k, "th": threshold}
        try:
            async with self._pool.connection() as conn:
                query = self._search_top1_query if k == 1 else self._search_query
                cur = await conn.execute(query, params, prepare=True)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cache similarity search failed: {exc}") from exc
        matches = [
            StoredEntry(
                id=r[0],
                response=bytes(r[1]) if r[1] is not None else b"",
                created_at=r[2],
                similarity=float(r[3]),
                text_digest=bytes(r[4]),
                lookup_text=r[5],
            )
            for r in rows
        ]
        # The server sorted them, but relaxed_order and float ties deserve a stable order.
        matches.sort(key=lambda e: (-e.similarity, e.id))
        return matches

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

    async def delete(self, entry_id: int, *, keys: list[tuple[bytes, bytes]] | None = None) -> bool:
        """Delete one entry by id; whether it existed. ``keys`` (when given) receives the
        deleted row's (partition, text digest)."""
        query = sql.SQL("DELETE FROM {t} WHERE id = %s").format(t=self._t)
        return await self._delete(query, (entry_id,), keys) > 0

    async def purge(
        self,
        *,
        scope: str | None = None,
        partition: bytes | None = None,
        expired: bool = False,
        all: bool = False,  # shadows the builtin: purge(all=True) is the documented spelling
        keys: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Delete entries; return how many. See :meth:`SemanticCache.purge`. ``keys``
        (when given) receives each deleted row's (partition, text digest)."""
        if all:
            if scope is not None or partition is not None or expired:
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
            conditions.append(sql.SQL("expires_at <= now()"))
        if not conditions:
            raise ConfigurationError(
                "purge needs a selector: scope=, partition=, expired=True or all=True"
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
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= now() "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)"
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
                    "SELECT pg_total_relation_size(%s::regclass)", (self._t.as_string(conn),)
                )
                size_row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cache stats failed: {exc}") from exc
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
        )

    async def _delete(
        self,
        query: sql.Composed,
        params: tuple[object, ...],
        keys: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        if keys is not None:
            query = query + sql.SQL(" RETURNING partition, text_digest")
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                if keys is None:
                    return max(cur.rowcount, 0)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cache delete failed: {exc}") from exc
        keys.extend((bytes(r[0]), bytes(r[1])) for r in rows)
        return len(rows)

    def connection_options(self) -> str:
        """libpq ``options`` the pool's connections need: see :func:`connection_options`."""
        return connection_options(self._ef_search)

    def _build_exact_query(self) -> bytes:
        return (
            sql.SQL(
                "SELECT id, response, created_at FROM {t} "
                "WHERE partition = %s AND text_digest = %s "
                "AND expires_at > now()"
            )
            .format(t=self._t)
            .as_bytes()
        )

    def _build_search_query(self) -> bytes:
        # The inner query is the plain index-ordered top-k (what HNSW can serve); the outer
        # one applies the threshold and keeps only the best candidate's response.
        return (
            sql.SQL(
                """
            SELECT id,
                   CASE WHEN row_number() OVER w = 1 THEN response END,
                   created_at,
                   similarity,
                   text_digest,
                   lookup_text
            FROM (
                SELECT id, response, created_at, text_digest, lookup_text,
                       1 - (embedding <=> %(v)s::vector) AS similarity
                FROM {t}
                WHERE partition = %(p)s AND expires_at > now()
                ORDER BY embedding <=> %(v)s::vector
                LIMIT %(k)s
            ) AS candidates
            WHERE similarity >= %(th)s
            WINDOW w AS (ORDER BY similarity DESC, id)
            ORDER BY similarity DESC, id
            """
            )
            .format(t=self._t)
            .as_bytes()
        )

    def _build_search_top1_query(self) -> bytes:
        # k = 1 (the default): no window and no sort above the index scan.
        return (
            sql.SQL(
                """
            SELECT id, response, created_at, similarity, text_digest, lookup_text
            FROM (
                SELECT id, response, created_at, text_digest, lookup_text,
                       1 - (embedding <=> %(v)s::vector) AS similarity
                FROM {t}
                WHERE partition = %(p)s AND expires_at > now()
                ORDER BY embedding <=> %(v)s::vector
                LIMIT %(k)s
            ) AS candidates
            WHERE similarity >= %(th)s
            """
            )
            .format(t=self._t)
            .as_bytes()
        )

    def _vector_param(self, embedding: Sequence[float]) -> BinaryVector:
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


def connection_options(ef_search: int | None) -> str:
    """libpq ``options`` for a store's pool connections: the HNSW search settings.

    ``-c hnsw.iterative_scan=relaxed_order`` (pgvector >= 0.8; older servers drop the
    unknown setting with a warning in their log) and ``-c hnsw.ef_search=N`` when
    ``ef_search`` is set. They apply to every query of the connection, so give the store a
    pool of its own. Without them, searches still return correct rows, but a small
    partition of a large table may get fewer than ``k``.
    """
    options = ["-c hnsw.iterative_scan=relaxed_order"]
    if ef_search is not None:
        options.append(f"-c hnsw.ef_search={ef_search}")
    return " ".join(options)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)
