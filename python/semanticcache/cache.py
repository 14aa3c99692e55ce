"""``SemanticCache``: exact match first, then embedding similarity inside a partition."""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Literal, Self

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache.embedders.base import BaseEmbedder
from semanticcache.errors import ConfigurationError, EmbedderError, StorageError
from semanticcache.storage.pgvector import PgVectorStore

__all__ = ["CacheHit", "SemanticCache", "lookup_digest"]


def lookup_digest(text: str) -> bytes:
    """The 32-byte digest that keys a lookup text (BLAKE2b-256 of its UTF-8 bytes)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached response found for a lookup."""

    response: bytes
    """The stored response bytes."""
    similarity: float
    """Cosine similarity between the lookup and the stored text (1.0 for exact)."""
    match: Literal["exact", "semantic"]
    """``exact``: same lookup text; ``semantic``: a similar one above the threshold."""
    entry_id: int
    """Id of the stored entry."""
    created_at: datetime
    """When the entry was stored (timezone-aware)."""


class SemanticCache:
    """A semantic response cache on Postgres + pgvector.

    ``get`` looks up the exact text first (by digest), then the most similar stored text
    of the same ``partition`` with cosine similarity >= ``threshold``. Partitions never
    mix: put everything that must match exactly (tenant, route, model, parameters) into
    the partition digest. Use ``async with`` or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        pg_uri: str,
        embedder: BaseEmbedder,
        threshold: float = 0.95,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise ConfigurationError(
                f"threshold is a cosine similarity in (0, 1], not {threshold!r}"
            )
        if not 1 <= pool_min_size <= pool_max_size:
            raise ConfigurationError("pool sizes need 1 <= pool_min_size <= pool_max_size")
        self._embedder = embedder
        self._threshold = threshold
        self._pg_uri = pg_uri
        self._connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            pg_uri,
            min_size=pool_min_size,
            max_size=pool_max_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=connect_timeout,
        )
        self._store = PgVectorStore(
            self._pool, model_id=embedder.model_id, dimension=embedder.dimension
        )
        self._ready = False
        self._open_lock = asyncio.Lock()

    @property
    def threshold(self) -> float:
        """Minimum cosine similarity of a semantic hit."""
        return self._threshold

    @property
    def embedder(self) -> BaseEmbedder:
        """The embedder of lookup texts."""
        return self._embedder

    @property
    def table(self) -> str:
        """The Postgres table holding this embedder's entries."""
        return self._store.table

    async def open(self) -> None:
        """Connect and create the schema; called by the first operation if not before."""
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

    async def get(self, text: str, *, partition: bytes = b"") -> CacheHit | None:
        """The cached response for ``text`` in ``partition``, or None on a miss."""
        if not self._ready:
            await self.open()
        entry = await self._store.get_exact(partition, lookup_digest(text))
        if entry is not None:
            await self._store.record_hit(entry.id)
            return CacheHit(entry.response, 1.0, "exact", entry.id, entry.created_at)
        vector = await self._embed(text)
        matches = await self._store.search(partition, vector, self._threshold, k=1)
        if not matches:
            return None
        best = matches[0]
        await self._store.record_hit(best.id)
        return CacheHit(best.response, best.similarity, "semantic", best.id, best.created_at)

    async def put(self, text: str, response: bytes, *, partition: bytes = b"") -> int:
        """Store ``response`` for ``text`` in ``partition`` (replacing any); return its id."""
        if not self._ready:
            await self.open()
        vector = await self._embed(text)
        return await self._store.put(partition, lookup_digest(text), text, vector, response)

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
