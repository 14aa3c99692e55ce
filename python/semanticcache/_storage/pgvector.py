"""The cache store: rows of one embedder configuration in Postgres + pgvector.

Rows are keyed by (partition digest, lookup-text digest): the unique btree holds two
short digests, never the full text (long prompts would break a btree). A semantic search
only ever looks inside one partition (an SQL equality filter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from semanticcache._storage import lookup_sql, schema, wire, write_sql
from semanticcache._storage.hot import advance_redis_epoch_sql
from semanticcache._storage.plan import (
    CUSTOM,
    EXACT,
    INDEX,
    PlanPolicy,
    connection_options,
    search_settings,
    set_config_sql,
)
from semanticcache._storage.records import (
    ScopeStats,
    SearchResult,
    StoredEntry,
    StoreStats,
    similarity_bucket,
)
from semanticcache._storage.replicas import ReadPools
from semanticcache._storage.tables import (
    MAX_DIMENSION,
    MAX_IDENTIFIER,
    TABLE_PREFIX,
    CacheTable,
    find_cache_tables,
    is_cache_table_name,
    table_name_for,
)
from semanticcache._storage.vector import BinaryVector, vector_param
from semanticcache._storage.wire import ReadStatement
from semanticcache.errors import ConfigurationError, StorageError

_COUNT_ATTEMPTS = 3

__all__ = [
    "CUSTOM",
    "INDEX",
    "BinaryVector",
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


class PgVectorStore:
    """Cache rows of one embedder configuration, over a psycopg async pool.

    The pool's connections must be in autocommit mode (``kwargs={"autocommit": True}``);
    methods open their own transactions where they need one. Call :meth:`ensure_schema`
    once before use (idempotent, safe from concurrent processes).

    ``transaction_settings`` (name, value pairs; may be empty) says that a transaction
    pooler is between the pool and Postgres: the lookup path's reads then run as unnamed
    statements, each after the search settings and these set for its own transaction
    (the pool's connections carry no session state and no ``options``). ``None``: the
    pool's connections carry the search settings (:func:`connection_options`).
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
        transaction_settings: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        if table is not None and not is_cache_table_name(table):
            raise ConfigurationError(
                f"table must be a cache table name ({TABLE_PREFIX}<model>_<dimension>, "
                f"at most {MAX_IDENTIFIER} bytes), not {table!r}"
            )
        # The other arguments' ranges are CacheSettings'; this one is the embedder's.
        if not 1 <= dimension <= MAX_DIMENSION:
            raise ConfigurationError(
                f"embedding dimension must be in 1..{MAX_DIMENSION} "
                f"(pgvector HNSW limit), not {dimension}"
            )
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
        self._exact_read = lookup_sql.exact_read(self._t)
        self._response_read = lookup_sql.response_read(self._t)
        # By (plan verdict, top-1): the statements of the verdicts that cache one plan.
        self._lookups = {
            (verdict, top1): lookup_sql.statement(self._t, top1=top1, exact=verdict == EXACT)
            for verdict in (INDEX, EXACT)
            for top1 in (True, False)
        }
        self._lookup_skewed = lookup_sql.function_call(self.table)
        self._upsert = write_sql.upsert(self._t)
        self._add_hits = write_sql.add_hits(self._t)
        self._plans = PlanPolicy(self.table)
        self._transaction_settings = (
            None if transaction_settings is None else list(transaction_settings)
        )
        self._prelude = self._reads_prelude()
        self.reads: ReadPools | None = None
        """Where the lookup path's reads go when the cache has read replicas (every
        other statement uses :attr:`pool`): set it with :meth:`use_reads`."""

    def _reads_prelude(self) -> bytes | None:
        """What the lookup path's reads run first in their transaction: ``None`` (named
        statements; the settings are the connections'), or the search settings (and
        ``transaction_settings``) as local settings."""
        if self._transaction_settings is None:
            return None
        settings = search_settings(self._ef_search, iterative_scan=self._iterative_scan)
        return set_config_sql([*settings, *self._transaction_settings], local=True)

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

    def use_reads(self, reads: ReadPools | None) -> None:
        """Send the lookup path's reads to ``reads`` (read replicas); the plan policy's
        ``ANALYZE`` then goes to the primary."""
        self.reads = reads
        self._plans.analyze_elsewhere = None if reads is None else self._analyze_on_primary

    async def _analyze_on_primary(self, statement: bytes) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(statement)

    @property
    def iterative_scan(self) -> bool:
        """Whether searches use pgvector's iterative index scan (pgvector >= 0.8; known
        after :meth:`ensure_schema`)."""
        return self._iterative_scan

    async def ensure_schema(self) -> None:
        """Create the ``vector`` extension (if the role may), the table and its indexes."""
        self._iterative_scan = await schema.ensure_schema(
            self._pool,
            self.table,
            dimension=self._dimension,
            m=self._m,
            ef_construction=self._ef_construction,
        )
        self._prelude = self._reads_prelude()

    async def put_entry(
        self,
        partition: bytes,
        text_digest: bytes,
        lookup_text: str,
        embedding: Sequence[float] | BinaryVector,
        response: bytes,
        *,
        scope: str = "",
        route: str = "",
        model: str | None = None,
        ttl_seconds: float | None = None,
    ) -> StoredEntry:
        """Insert or replace the entry for (partition, text_digest); return it (its id,
        ``created_at`` and ``expires_at``: its version, see
        :mod:`semanticcache._storage.redis_tier`).

        A replaced entry gets the new text, vector and response, a fresh ``created_at``
        (later than the one it replaces: see :func:`~semanticcache._storage.write_sql.upsert`)
        and a hit count of zero.
        ``lookup_text``, ``scope``, ``route`` and ``model`` are stored as given (use
        :func:`~semanticcache._key.db_text` for arbitrary strings: ``text`` holds no NUL);
        ``route`` and ``model`` are what :meth:`purge` selects by.
        ``ttl_seconds`` sets ``expires_at`` (``None``: ``'infinity'``, never expires).
        """
        vector = vector_param(embedding, self._dimension, self.table)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    self._upsert,
                    (
                        partition,
                        text_digest,
                        scope,
                        route,
                        model,
                        lookup_text,
                        vector,
                        response,
                        ttl_seconds,
                    ),
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

        One round trip: what :meth:`lookup` sends, with an empty text digest, which no
        row has. ``hnsw.ef_search`` and ``hnsw.iterative_scan`` are session settings of
        the pool's connections (see :func:`connection_options`): a per-query ``SET``
        needs a multi-statement message, which cannot be prepared. With
        ``transaction_settings`` (a transaction pooler) they are set in each read's own
        transaction instead, in the same round trip.
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
        that embed cheaply (:attr:`~semanticcache.BaseEmbedder.embeds_cheaply`).
        The SQL is :mod:`~semanticcache._storage.lookup_sql`'s, in the form the plan
        policy (:mod:`~semanticcache._storage.plan`) chose for the table.
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
        params = [
            partition,
            text_digest,
            vector_param(embedding, self._dimension, self.table).data,
            wire.dump_float8(threshold),
            wire.dump_int4(k),
        ]

        async def search_on(pool: AsyncConnectionPool) -> list[tuple[Any, ...]]:
            conn = await pool.getconn()  # see _fetch
            try:
                prelude = self._prelude
                verdict = await self._plans.verdict(conn, prelude, partition)
                if verdict == CUSTOM:
                    return await self._lookup_skewed.fetch(conn, params, prelude=prelude)
                if k == 1:  # the top-1 statements take no k
                    statement = self._lookups[verdict, True]
                    return await statement.fetch(conn, params[:4], prelude=prelude)
                return await self._lookups[verdict, False].fetch(conn, params, prelude=prelude)
            finally:
                await pool.putconn(conn)

        try:
            rows = await self._read(search_on)
        except psycopg.Error as exc:
            raise StorageError(f"cache {what} failed: {exc}") from exc
        return SearchResult.from_rows(rows, threshold)

    async def _fetch(
        self, statement: ReadStatement, params: Sequence[bytes | None]
    ) -> list[tuple[Any, ...]]:
        """Run one read statement of the lookup path (see :mod:`~semanticcache._storage.wire`);
        its rows.

        ``getconn`` / ``putconn``: ``pool.connection()`` also enters the connection's own
        context (a commit step under its lock), which one autocommit statement does not
        need. ``putconn`` discards a connection returned mid-query (a lookup cancelled by
        its timeout), as the context manager does.
        """

        async def fetch_on(pool: AsyncConnectionPool) -> list[tuple[Any, ...]]:
            conn = await pool.getconn()
            try:
                return await statement.fetch(conn, params, prelude=self._prelude)
            finally:
                await pool.putconn(conn)

        return await self._read(fetch_on)

    async def _read[T](self, work: Callable[[AsyncConnectionPool], Awaitable[T]]) -> T:
        """``work(pool)`` on the pool a lookup-path read goes to: a read replica's
        (:attr:`reads`), else the store's own."""
        if self.reads is None:
            return await work(self._pool)
        return await self.reads.run(work)

    async def add_hits(self, counts: Mapping[int, int]) -> None:
        """Add ``counts[id]`` to the hit count of each entry, in one statement."""
        if not counts:
            return
        # In id order in every process: two flushes that lock the same rows in opposite
        # orders deadlock. The plan may still visit rows in page order, so a deadlock
        # is retried too.
        ordered = sorted(counts.items())
        params = ([i for i, _ in ordered], [n for _, n in ordered])
        await self._add_counts(self._add_hits, params, "hit")

    async def _add_counts(self, query: Any, params: Sequence[object], what: str) -> None:
        """Run a count update; one that Postgres aborted as a deadlock's victim is run
        again (its transaction rolled back whole), up to three times in all."""
        for attempt in range(_COUNT_ATTEMPTS):
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(query, params)
                return
            except psycopg.errors.DeadlockDetected as exc:
                if attempt == _COUNT_ATTEMPTS - 1:
                    raise StorageError(f"cache {what} count update failed: {exc}") from exc
            except psycopg.Error as exc:
                raise StorageError(f"cache {what} count update failed: {exc}") from exc

    async def add_nearest(self, counts: Mapping[tuple[str, int], int]) -> None:
        """Add ``counts[(outcome, bucket)]`` lookups to the table's nearest-similarity
        counts, in one statement."""
        if not counts:
            return
        ordered = sorted(counts.items())  # in one order everywhere, as in add_hits
        outcomes = [outcome for (outcome, _), _ in ordered]
        buckets = [bucket for (_, bucket), _ in ordered]
        params = (self.table, outcomes, buckets, [n for _, n in ordered])
        await self._add_counts(write_sql.ADD_NEAREST, params, "similarity")

    async def delete(
        self, entry_id: int, *, keys: list[tuple[bytes, bytes, int]] | None = None
    ) -> bool:
        """Delete one entry by id; whether it existed. ``keys`` (when given) receives the
        deleted row's (partition, text digest, id)."""
        return await self._delete(write_sql.delete_by_id(self._t), (entry_id,), keys) > 0

    async def purge(
        self,
        *,
        scope: str | None = None,
        partition: bytes | None = None,
        expired: bool = False,
        older_than: float | None = None,
        all: bool = False,  # shadows the builtin: purge(all=True) is the documented spelling
        route: str | None = None,
        model: str | None = None,
        keys: list[tuple[bytes, bytes, int]] | None = None,
    ) -> int:
        """Delete entries; return how many. See :meth:`SemanticCache.purge`. ``keys``
        (when given) receives each deleted row's (partition, text digest, id)."""
        query, params = write_sql.purge(
            self._t,
            scope=scope,
            partition=partition,
            expired=expired,
            older_than=older_than,
            all=all,
            route=route,
            model=model,
        )
        return await self._delete(query, params, keys)

    async def purge_expired_batch(self, limit: int) -> int:
        """Delete up to ``limit`` expired rows (those no other purge holds); return how
        many."""
        return await self._delete(write_sql.purge_expired_batch(self._t), (limit,))

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
        size = int(size_row[0]) if size_row is not None else 0
        return StoreStats.from_rows(rows, size, counted)

    async def table_figures(self) -> tuple[int, int]:
        """(entries, bytes) of the table, cheaply: the planner's row estimate
        (``reltuples``, kept by VACUUM and ANALYZE; the statistics' live-row count before
        the first of them) and ``pg_total_relation_size``. No scan, whatever the size."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint "
                    "ELSE pg_stat_get_live_tuples(c.oid) END, pg_total_relation_size(c.oid) "
                    "FROM pg_class c WHERE c.oid = to_regclass(%s)",
                    (self._t.as_string(conn),),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cache table figures failed: {exc}") from exc
        if row is None:
            raise StorageError(f"no table {self.table}")
        return int(row[0]), int(row[1])

    async def _delete(
        self,
        query: sql.Composed,
        params: tuple[object, ...],
        keys: list[tuple[bytes, bytes, int]] | None = None,
    ) -> int:
        if keys is not None:
            query = write_sql.returning_keys(query)
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
