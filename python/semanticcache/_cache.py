"""``SemanticCache``: exact match first, then embedding similarity inside a partition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import psycopg

from semanticcache import _options as options
from semanticcache._activity import Activity
from semanticcache._background import Background
from semanticcache._breaker import BreakerState, CircuitBreaker
from semanticcache._connection import PgConnection
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._embedders.factory import get_embedder
from semanticcache._feedback import Feedback
from semanticcache._guard import Guard, Unavailable, connection_lost
from semanticcache._judge import Judge
from semanticcache._key import CacheKey, lookup_digest
from semanticcache._lookup import LookupPath, target_of
from semanticcache._maintenance import Maintenance
from semanticcache._memo import Embeddings
from semanticcache._metrics import Metrics, metrics_for
from semanticcache._redis_copies import RedisCopies
from semanticcache._results import CacheHit, CacheLookup, CacheStats, LookupReason
from semanticcache._settings import (
    SECONDS_PER_DAY,
    CacheSettings,
)
from semanticcache._storage.hot import HotEntries
from semanticcache._storage.pgvector import PgVectorStore, ScopeStats
from semanticcache._storage.redis_tier import RedisBlobStore
from semanticcache._tracing import Tracing, tracing_for
from semanticcache._verifier import Verifier, load_verifier
from semanticcache._writes import WritePath
from semanticcache.errors import ConfigurationError, StorageError

_log = logging.getLogger("semanticcache.cache")

__all__ = [
    "CacheHit",
    "CacheLookup",
    "CacheStats",
    "LookupReason",
    "ScopeStats",
    "SemanticCache",
    "lookup_digest",
]


class SemanticCache(Maintenance):
    """A semantic response cache on Postgres + pgvector.

    A lookup tries the exact (normalized) text of the key's partition first, then embeds
    the text and asks pgvector for the ``top_k`` nearest entries *of the same partition*
    above the stage-1 gate; stage 2 (:mod:`semanticcache._judge`: the agreement check,
    ``rejection_threshold``, the verifier) picks the one to serve, if any. Partitions
    never mix: isolation is an SQL equality filter, never an embedding distance. The
    whole path is described in docs/cache.md.

    Configuration comes from ``settings`` (default: the environment's); a keyword
    argument that is not ``None`` overrides the setting of the same meaning. The pool and
    the schema are created on first use (or by :meth:`open`). Use ``async with`` or call
    :meth:`close`. ``hot_entries=N`` keeps the last N exact hits in memory (kept true
    across processes by Postgres notices); ``embedding_memo_size`` recent embeddings are
    remembered, so a ``put`` after a missed lookup does not embed again.
    """

    def __init__(
        self,
        *,
        embedder: BaseEmbedder | None = None,
        settings: CacheSettings | None = None,
        pg_uri: str | None = None,
        redis_uri: str | None = None,
        threshold: float | None = None,
        top_k: int | None = None,
        rejection_threshold: float | None = None,
        agreement_check: bool | None = None,
        hnsw_m: int | None = None,
        hnsw_ef_construction: int | None = None,
        ef_search: int | None = None,
        ttl_days: float | None = None,
        embed_timeout: float | None = None,
        store_timeout: float | None = None,
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        breaker_failures: int | None = None,
        breaker_cooldown: float | None = None,
        connect_timeout: float = options.CONNECT_TIMEOUT,
        hit_flush_interval: float = options.HIT_FLUSH_INTERVAL,
        purge_interval: float = options.PURGE_INTERVAL,
        purge_batch_size: int = options.PURGE_BATCH,
        purge_pause: float = options.PURGE_PAUSE,
        embedding_memo_size: int = options.EMBEDDING_MEMO,
        hot_entries: int | None = None,
        hot_entries_bytes: int = options.HOT_BYTES,
        raise_errors: bool = False,
    ) -> None:
        arguments = locals()
        merged = options.merged_settings(settings, arguments)
        # Checks the URI first: without one and without the embedded extra, nothing works.
        self._pg = PgConnection(merged, connect_timeout)
        if embedder is None:
            embedder = get_embedder(merged)
        elif not isinstance(embedder, BaseEmbedder):
            raise ConfigurationError("embedder must be a BaseEmbedder instance")
        options.check_tuning(arguments)
        self._settings = merged
        self._embedder = embedder
        self._connect_timeout = connect_timeout
        self._raise_errors = raise_errors
        self._ttl_seconds = (
            merged.pg_ttl_days * SECONDS_PER_DAY if merged.pg_ttl_days is not None else None
        )
        self._store_timeout = merged.store_timeout_seconds
        self._outcomes: Counter[str] = Counter()
        # None unless metrics are on: prometheus_client is then never imported.
        self._metrics: Metrics | None = metrics_for(merged)
        self._breakers: dict[str, CircuitBreaker] = {}
        # None unless tracing is on: opentelemetry is then never imported.
        self._tracing: Tracing | None = tracing_for(merged)
        self._store_guard = Guard("store", self._breaker("postgres"), self._store_timeout)
        self._embeddings = Embeddings(
            embedder,
            Guard(
                "embed",
                self._breaker(f"embedder {embedder.model_id}", "embedder"),
                merged.embed_timeout_seconds,
            ),
            embedding_memo_size,
            on_embed=self._metrics.embedded if self._metrics is not None else None,
            tracing=self._tracing,
        )
        self._store = PgVectorStore(
            self._pg.pool,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            hnsw_m=merged.pgvector_hnsw_m,
            hnsw_ef_construction=merged.pgvector_hnsw_ef_construction,
            ef_search=merged.pgvector_hnsw_ef_search,
            transaction_settings=self._pg.transaction_settings,
        )
        self._hot = HotEntries(
            self._store.table,
            max_entries=merged.hot_entries,
            max_bytes=hot_entries_bytes,
            redis_epoch=merged.redis_uri is not None,
        )
        self._hot.fence = self._pg.fence
        for number, replica in enumerate(self._pg.replicas, 1):
            # Each read replica's breaker, in the metrics as postgres_replica_<n>.
            replica.breaker = self._breaker(replica.breaker.name, f"postgres_replica_{number}")
        # With replicas, the lookup path's reads have a breaker of their own: a primary
        # that fails the writes does not stop the lookups the replicas answer.
        self._read_guard = self._store_guard
        if self._pg.replicas:
            reads = self._breaker("postgres reads", "postgres_reads")
            self._read_guard = Guard("store", reads, self._store_timeout)
        self._background = Background(
            self._store,
            flush_interval=hit_flush_interval,
            purge_interval=purge_interval if self._ttl_seconds is not None else None,
            purge_batch=purge_batch_size,
            purge_pause=purge_pause,
        )
        redis = None
        if merged.redis_uri is not None:
            redis = RedisBlobStore(
                merged.redis_uri,
                namespace=self._store.table,
                ttl_seconds=merged.effective_redis_ttl_seconds,
                timeout=self._store_timeout,
            )
        self._redis = RedisCopies(
            redis,
            Guard("redis", self._breaker("redis"), self._store_timeout),
            store=self._store,
            store_call=self._store_call,
            hot=self._hot,
            background=self._background,
        )
        self._verifier = load_verifier(merged, embedder)
        verify_guard = Guard("verify", self._breaker("verifier"), merged.embed_timeout_seconds)
        self._judge = Judge(merged, self._verifier, verify_guard)
        self._lookups = LookupPath(
            merged,
            store=self._store,
            store_call=self._store_call,
            embeddings=self._embeddings,
            hot=self._hot,
            redis=self._redis,
            judge=self._judge,
            on_search=self._metrics.searched if self._metrics is not None else None,
            tracing=self._tracing,
        )
        self._writes = WritePath(
            store=self._store,
            store_call=self._store_call,
            embeddings=self._embeddings,
            hot=self._hot,
            redis=self._redis,
            ttl_seconds=self._ttl_seconds,
            on_stored=self._metrics.stored if self._metrics is not None else None,
            tracing=self._tracing,
        )
        self._feedback = Feedback(self._store, self._store_call, self._redis, self._ensure_open)
        self.activity = Activity(
            merged.effective_log_digest_key,
            self._store.table,
            lambda: self._judge.gate,
            on_near_miss=self._background.add_near_miss,
        )
        """This process's recent lookups and near misses (the admin dashboard's); the
        near misses also go to Postgres, in the background."""
        self._ready = False
        self._open_lock = asyncio.Lock()

    def _breaker(self, name: str, dependency: str | None = None) -> CircuitBreaker:
        metrics = self._metrics
        on_change = None if metrics is None else metrics.watch_breaker(dependency or name)
        breaker = CircuitBreaker(
            name,
            failures=self._settings.breaker_failures,
            cooldown=self._settings.breaker_cooldown_seconds,
            on_change=on_change,
        )
        self._breakers[dependency or name] = breaker
        return breaker

    def breaker_states(self) -> dict[str, BreakerState]:
        """This process's circuit breaker of each dependency and its state."""
        return {name: breaker.state for name, breaker in self._breakers.items()}

    @property
    def metrics(self) -> Metrics | None:
        """The process's Prometheus metrics when this cache records them, else ``None``."""
        return self._metrics

    @property
    def tracing(self) -> Tracing | None:
        """The process's OpenTelemetry tracing when this cache records spans, else ``None``."""
        return self._tracing

    @property
    def settings(self) -> CacheSettings:
        """The effective settings (``settings`` with the keyword overrides applied)."""
        return self._settings

    @property
    def threshold(self) -> float:
        """Minimum cosine similarity of a semantic hit when the verifier is off (with it
        on, the verifier's ``floor`` is the stage-1 gate)."""
        return self._settings.threshold

    @property
    def verifier(self) -> Verifier | None:
        """Stage 2's pair classifier with its threshold, or ``None`` when it is off."""
        return self._verifier

    @property
    def embedder(self) -> BaseEmbedder:
        """The embedder of lookup texts."""
        return self._embedder

    @property
    def hot_serving(self) -> bool:
        """Whether exact hits are being served from memory now (``hot_entries`` set
        and the invalidation listener connected)."""
        return self._hot.serving

    @property
    def table(self) -> str:
        """The Postgres table holding this embedder's entries."""
        return self._store.table

    @property
    def store(self) -> PgVectorStore:
        """The underlying pgvector store (low-level access)."""
        return self._store

    async def run_on_store[T](
        self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """``work(conn)`` on a connection of the cache's pool (autocommit), as the
        cache's own queries run: under ``store_timeout`` (waiting for a connection
        included) and the Postgres circuit breaker, its failures counted by the breaker.

        The cache must be open (:meth:`open`, or a first lookup); this never opens it,
        so work left over after :meth:`close` fails instead of reopening it. Raises
        :class:`~semanticcache.errors.StorageError` when Postgres fails, the budget
        passes (``work`` is then cancelled in the background), the breaker is open or
        the cache is not open. ``work`` may run twice when its connection was closed
        under it (a server restart): it must be safe to repeat.
        """

        async def make() -> T:
            try:
                async with self._pg.pool.connection() as conn:
                    return await work(conn)
            except psycopg.Error as exc:
                raise StorageError(f"store operation failed: {exc}") from exc

        if not self._ready:
            raise StorageError("the cache is not open")
        try:
            return await self._store_call(make, open_first=False)
        except Unavailable as exc:
            raise StorageError(f"store operation failed: {exc.describe()}") from exc.cause

    async def open(self) -> None:
        """Connect and create the schema; called by the first operation if not before.

        Raises :class:`~semanticcache.errors.StorageError` when Postgres cannot be reached
        or the schema cannot be created (``get`` / ``lookup`` turn that into a miss and
        try again on a later call). A closed cache opens again with a new pool.
        """
        async with self._open_lock:
            if self._ready:
                return
            uri = await self._pg.connect(self._store)
            await self._store.ensure_schema()
            if self._metrics is not None:
                self._metrics.watch_table(self._store)
            self._hot.start(uri, self._connect_timeout)
            if self._redis.redis is not None:
                # Redis copies are served once the listener knows the epoch.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._connect_timeout):
                        await self._hot.wait_first_attempt()
            self._ready = True

    async def get(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheHit | None:
        """The cached response for ``key``, or None on a miss.

        ``key`` is a :class:`~semanticcache.CacheKey`, or (low level) a lookup text
        with an explicit ``partition`` digest (default ``b""``).
        """
        return (await self.lookup(key, partition=partition)).hit

    async def lookup(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheLookup:
        """Like :meth:`get`, with the reason for a miss and the stage-1 figures.

        Never raises for a dependency failure: an embedder or Postgres error, a timeout
        (``embed_timeout`` / ``store_timeout``) or an open circuit breaker is a miss whose
        ``reason`` says which. Invalid arguments still raise ``ConfigurationError``.
        """
        started = time.perf_counter()
        target = await target_of(key, partition)
        try:
            result = await self._lookups.run(target)
        except Unavailable as exc:
            if exc.reason != "breaker_open":
                _log.warning("cache lookup failed open: %s", exc.describe())
            result = CacheLookup(None, exc.reason)
        self._outcomes[result.reason] += 1
        if self._metrics is not None:
            self._metrics.lookup(result, time.perf_counter() - started)
        self._background.count_lookup(result)
        self.activity.record(target.text, result, scope=target.scope)
        return result

    async def put(
        self,
        key: CacheKey | str,
        response: bytes,
        *,
        partition: bytes | None = None,
        raise_errors: bool | None = None,
    ) -> int | None:
        """Store ``response`` for ``key`` (replacing the entry of the same normalized
        text in the same partition); return the entry id.

        A dependency failure (embedder or Postgres error, timeout, open breaker) is
        logged without the prompt and gives ``None``, unless ``raise_errors`` (this call's
        argument, else the constructor's) is true: then it raises
        :class:`~semanticcache.errors.EmbedderError` or
        :class:`~semanticcache.errors.StorageError`. An embedder that returns a vector of
        the wrong dimension, or with NaN / infinite values, always raises
        :class:`~semanticcache.errors.EmbedderError`: that is a configuration error.
        """
        target = await target_of(key, partition)
        if not isinstance(response, bytes):
            raise ConfigurationError("response must be bytes")
        loud = self._raise_errors if raise_errors is None else raise_errors
        return await self._writes.put(target, response, loud=loud)

    async def close(self) -> None:
        """Stop the background tasks, write pending hit counts, close the pool and the
        Redis client. Idempotent."""
        await self._background.stop()
        if self._ready:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(self._connect_timeout):
                    await self.flush_hits()
        self._background.pending_hits.clear()
        if self._ready and self._metrics is not None:
            self._metrics.unwatch_table(self._store)
        self._ready = False
        await self._hot.stop()
        if self._redis.redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.redis.close()
        await self._pg.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ensure_open(self) -> None:
        if not self._ready:
            await self.open()
        self._background.start_purge()

    async def _store_call[T](
        self, make: Callable[[], Awaitable[T]], *, open_first: bool = True, read: bool = False
    ) -> T:
        """Run one store operation under the store breaker and ``store_timeout``
        (opening the cache first, unless ``open_first`` is false).

        ``read``: a lookup-path read (:mod:`~semanticcache._storage.wire`), which ends
        at once when interrupted, so it runs in the caller's task under a plain timeout;
        any other operation (a psycopg cursor's interrupted wait lasts up to 10 s) runs
        as a task given up at the budget (:func:`~semanticcache._guard.within`). Opening
        the cache is the latter kind.

        An operation whose connection was closed under it (a server restart) runs once
        more on another, within the same budget: the closed connection says nothing
        about the server, a failure to get a working one does.
        """

        async def run() -> T:
            if open_first:
                await self._ensure_open()
            try:
                return await make()
            except StorageError as exc:
                if not connection_lost(exc):
                    raise
            return await make()

        inline = read and self._ready  # opening the cache is never inline
        guard = self._read_guard if read else self._store_guard
        return await guard.call(run, inline=inline)
