"""``SemanticCache``: exact match first, then embedding similarity inside a partition."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Final, Literal, Self

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache.embedders.base import BaseEmbedder
from semanticcache.errors import ConfigurationError, EmbedderError, StorageError
from semanticcache.key import CacheKey, db_text, lookup_digest
from semanticcache.settings import CacheSettings
from semanticcache.storage.pgvector import PgVectorStore

__all__ = ["CacheHit", "CacheLookup", "LookupReason", "SemanticCache", "lookup_digest"]

LookupReason = Literal[
    "hit",
    "miss",
    "rejected",
    "embed_timeout",
    "embed_error",
    "store_timeout",
    "store_error",
    "breaker_open",
]
"""Why a lookup ended as it did: ``hit``; ``miss`` (nothing similar enough);
``rejected`` (the best candidate passed ``threshold`` but not ``rejection_threshold``);
or the dependency failure that made it a miss."""

_DEFAULT_CONNECT_TIMEOUT: Final = 10.0


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


@dataclass(frozen=True, slots=True)
class _Target:
    partition: bytes
    text_digest: bytes
    text: str
    scope: str


class SemanticCache:
    """A semantic response cache on Postgres + pgvector.

    A lookup checks the exact (normalized) text of the key's partition first, by digest
    and without calling the embedder; then embeds the text and asks pgvector for the
    ``top_k`` nearest entries *of the same partition* with cosine similarity >=
    ``threshold`` (stage 1); the best of them is served if it also reaches the optional
    ``rejection_threshold`` (stage 2). Partitions never mix: isolation is an SQL
    equality filter, never an embedding distance.

    Configuration comes from ``settings`` (a :class:`~semanticcache.settings.CacheSettings`,
    default: all defaults); a keyword argument that is not ``None`` overrides the
    setting of the same meaning. The pool and the schema are created on first use (or by
    :meth:`open`). Use ``async with`` or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        embedder: BaseEmbedder,
        settings: CacheSettings | None = None,
        pg_uri: str | None = None,
        threshold: float | None = None,
        top_k: int | None = None,
        rejection_threshold: float | None = None,
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
    ) -> None:
        overrides = {
            name: value
            for name, value in (
                ("pg_uri", pg_uri),
                ("threshold", threshold),
                ("top_k_candidates", top_k),
                ("rejection_threshold", rejection_threshold),
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
            )
            if value is not None
        }
        base = settings if settings is not None else CacheSettings()
        try:
            # replace() runs the settings' validation on the merged values.
            merged = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"invalid SemanticCache argument: {exc}") from None
        if merged.pg_uri is None:
            raise ConfigurationError(
                "SemanticCache needs a Postgres URI: pass pg_uri= or set "
                "SEMANTIC_CACHE_PG_URI in the settings"
            )
        if not (math.isfinite(connect_timeout) and connect_timeout > 0):
            raise ConfigurationError(f"connect_timeout must be > 0 seconds, not {connect_timeout}")
        if not isinstance(embedder, BaseEmbedder):
            raise ConfigurationError("embedder must be a BaseEmbedder instance")
        self._settings = merged
        self._embedder = embedder
        self._pg_uri = merged.pg_uri
        self._connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            merged.pg_uri,
            min_size=merged.pg_pool_min_size,
            max_size=merged.pg_pool_max_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=connect_timeout,
        )
        self._store = PgVectorStore(
            self._pool,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            hnsw_m=merged.pgvector_hnsw_m,
            hnsw_ef_construction=merged.pgvector_hnsw_ef_construction,
            ef_search=merged.pgvector_hnsw_ef_search,
        )
        self._ready = False
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
    def rejection_threshold(self) -> float | None:
        """Stage-2 cutoff the best candidate must also reach, or ``None``."""
        return self._settings.rejection_threshold

    @property
    def embedder(self) -> BaseEmbedder:
        """The embedder of lookup texts."""
        return self._embedder

    @property
    def table(self) -> str:
        """The Postgres table holding this embedder's entries."""
        return self._store.table

    @property
    def store(self) -> PgVectorStore:
        """The underlying pgvector store (low-level access)."""
        return self._store

    async def open(self) -> None:
        """Connect and create the schema; called by the first operation if not before.

        Raises :class:`~semanticcache.errors.StorageError` when Postgres cannot be reached
        or the schema cannot be created.
        """
        async with self._open_lock:
            if self._ready:
                return
            try:
                # One direct connection first: a wrong URI or a down server fails fast
                # with libpq's own message, instead of the pool's retries and timeout.
                probe = await psycopg.AsyncConnection.connect(
                    self._pg_uri, connect_timeout=max(1, round(self._connect_timeout))
                )
                await probe.close()
                await self._pool.open(wait=True, timeout=self._connect_timeout)
            except (psycopg.Error, TimeoutError) as exc:
                await self._pool.close()
                raise StorageError(f"could not connect to Postgres: {exc}") from exc
            await self._store.ensure_schema()
            self._ready = True

    async def get(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheHit | None:
        """The cached response for ``key``, or None on a miss.

        ``key`` is a :class:`~semanticcache.key.CacheKey`, or (low level) a lookup text
        with an explicit ``partition`` digest (default ``b""``).
        """
        return (await self.lookup(key, partition=partition)).hit

    async def lookup(self, key: CacheKey | str, *, partition: bytes | None = None) -> CacheLookup:
        """Like :meth:`get`, with the reason for a miss and the stage-1 figures."""
        target = self._target(key, partition)
        if not self._ready:
            await self.open()
        entry = await self._store.get_exact(target.partition, target.text_digest)
        if entry is not None:
            await self._store.record_hit(entry.id)
            hit = CacheHit(entry.response, 1.0, "exact", entry.id, entry.created_at)
            return CacheLookup(hit, "hit", best_similarity=1.0)
        vector = await self._embed(target.text)
        candidates = await self._store.search(
            target.partition, vector, self.threshold, k=self.top_k
        )
        if not candidates:
            return CacheLookup(None, "miss")
        best = candidates[0]
        rejection = self.rejection_threshold
        if rejection is not None and best.similarity < rejection:
            return CacheLookup(
                None, "rejected", best_similarity=best.similarity, candidates=len(candidates)
            )
        await self._store.record_hit(best.id)
        hit = CacheHit(best.response, best.similarity, "semantic", best.id, best.created_at)
        return CacheLookup(hit, "hit", best_similarity=best.similarity, candidates=len(candidates))

    async def put(
        self, key: CacheKey | str, response: bytes, *, partition: bytes | None = None
    ) -> int:
        """Store ``response`` for ``key`` (replacing the entry of the same normalized
        text in the same partition); return the entry id."""
        target = self._target(key, partition)
        if not isinstance(response, bytes):
            raise ConfigurationError("response must be bytes")
        if not self._ready:
            await self.open()
        vector = await self._embed(target.text)
        return await self._store.put(
            target.partition,
            target.text_digest,
            db_text(target.text),
            vector,
            response,
            scope=db_text(target.scope),
        )

    async def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._ready = False
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

    def _target(self, key: CacheKey | str, partition: bytes | None) -> _Target:
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
        return _Target(partition, lookup_digest(key), key, "")

    async def _embed(self, text: str) -> list[float]:
        vectors = await self._embedder.embed([text])
        if len(vectors) != 1 or len(vectors[0]) != self._embedder.dimension:
            raise EmbedderError(
                f"{self._embedder!r} returned {len(vectors)} vector(s) of length "
                f"{len(vectors[0]) if vectors else 0} for 1 text; expected one of "
                f"{self._embedder.dimension}"
            )
        vector = vectors[0]
        if not all(math.isfinite(x) for x in vector) or not any(vector):
            raise EmbedderError(f"{self._embedder!r} returned a zero or non-finite vector")
        return vector
