"""The write path: put, delete and purge entries, keeping Redis and hot copies true."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from semanticcache._guard import StoreCall, Unavailable
from semanticcache._key import db_text, route_target
from semanticcache._lookup import Target
from semanticcache._memo import Embeddings
from semanticcache._offload import off_loop_if_long
from semanticcache._redis_copies import RedisCopies
from semanticcache._storage.hot import HotEntries
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache._tracing import STORE
from semanticcache.errors import EmbedderError, StorageError

if TYPE_CHECKING:
    from semanticcache._tracing import Tracing

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")


class WritePath:
    """Changes to entries; each refreshes or voids the copies of what it replaced."""

    def __init__(
        self,
        *,
        store: PgVectorStore,
        store_call: StoreCall,
        embeddings: Embeddings,
        hot: HotEntries,
        redis: RedisCopies,
        ttl_seconds: float | None,
        on_stored: Callable[[float], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._store_call = store_call
        self._embeddings = embeddings
        self._hot = hot
        self._redis = redis
        self._ttl_seconds = ttl_seconds
        self._on_stored = on_stored  # given each stored put's seconds (metrics)
        self._tracing = tracing

    async def put(self, target: Target, response: bytes, *, loud: bool) -> int | None:
        """The new entry's id; on a dependency failure ``None`` (logged), or, when
        ``loud``, :class:`EmbedderError` / :class:`StorageError`."""
        storing = self._put(target, response, loud=loud)
        if self._tracing is None or self._tracing.untraced():
            return await storing
        with self._tracing.span(STORE, {"semcache.response_bytes": len(response)}) as span:
            entry_id = await storing
            span.set_attribute("semcache.stored", entry_id is not None)
            return entry_id

    async def _put(self, target: Target, response: bytes, *, loud: bool) -> int | None:
        started = time.perf_counter()
        # Read before Postgres is written: see RedisCopies.copy.
        epoch = self._hot.last_redis_epoch
        try:
            vector = await self._embeddings.embed(target.text)
            text = await off_loop_if_long(len(target.text), lambda: db_text(target.text))
            stored = await self._store_call(
                lambda: self._store.put_entry(
                    target.partition,
                    target.text_digest,
                    text,
                    vector,
                    response,
                    scope=db_text(target.scope),
                    route=db_text(route_target(target.route)),
                    model=db_text(target.model) if target.model is not None else None,
                    ttl_seconds=self._ttl_seconds,
                )
            )
        except Unavailable as exc:
            self._hot.forget(target.slot)
            if loud:
                error = EmbedderError if exc.dependency == "embed" else StorageError
                raise error(f"cache put failed: {exc.describe()}") from exc.cause
            if self._tracing is not None and not self._tracing.untraced():
                # Failing open: no exception reaches the span, the reason does.
                self._tracing.failed(exc.reason)
            if exc.reason != "breaker_open":
                _log.warning("cache put failed, not stored: %s", exc.describe())
            return None
        # This process's own memory: no need to wait for the notice.
        self._hot.forget(target.slot)
        redis = self._redis
        if redis.redis is not None and not await redis.copy(
            target.partition, target.text_digest, stored, epoch
        ):
            # Redis may still hold the replaced answer: void every copy before returning.
            await redis.void("a replaced entry")
        if self._on_stored is not None:
            self._on_stored(time.perf_counter() - started)
        return stored.id

    async def delete(self, entry_id: int) -> bool:
        """Delete one entry by id; whether it existed."""
        keys = self._redis_keys()
        existed = await self._store.delete(entry_id, keys=keys)
        if existed:
            await self._redis.forget(keys)
        return existed

    async def purge(
        self,
        *,
        scope: str | None,
        partition: bytes | None,
        expired: bool,
        older_than: float | None,
        all: bool,  # the store's spelling
        route: str | None = None,
        model: str | None = None,
    ) -> int:
        """Delete the entries the selectors match (checked by the store); how many."""
        keys = self._redis_keys()
        count = await self._store.purge(
            scope=scope,
            partition=partition,
            expired=expired,
            older_than=older_than,
            all=all,
            route=route,
            model=model,
            keys=keys,
        )
        if count:
            await self._redis.forget(keys)
        return count

    def _redis_keys(self) -> list[tuple[bytes, bytes, int]] | None:
        """A list for the deleted rows' Redis keys, when this process has Redis."""
        return [] if self._redis.redis is not None else None
