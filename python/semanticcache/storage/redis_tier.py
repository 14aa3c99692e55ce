"""The Redis blob tier: response blobs by exact key, with a TTL, in front of Postgres.

Postgres stays the source of truth (every row keeps its response); Redis holds a copy of
each blob under the row's exact key (partition digest + lookup-text digest), so an exact
repeat is one Redis ``GET`` and no Postgres query. Redis may lose blobs at any time
(flush, eviction, restart, TTL): the cache then finds the row in Postgres.

Value layout: 8-byte big-endian entry id, 8-byte big-endian float creation time (Unix
seconds), then the response bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from semanticcache.errors import ConfigurationError, StorageError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["INSTALL_HINT", "RedisBlob", "RedisBlobStore"]

INSTALL_HINT: Final = (
    'the Redis tier needs the "redis" extra: pip install "fastapi-semcache[redis]" '
    "(or unset SEMANTIC_CACHE_REDIS_URI)"
)
_HEADER: Final = struct.Struct(">qd")
_DELETE_BATCH: Final = 500


class RedisBlob:
    """A blob read back from Redis."""

    __slots__ = ("created_at", "entry_id", "response")

    def __init__(self, entry_id: int, created_at: datetime, response: bytes) -> None:
        self.entry_id = entry_id
        self.created_at = created_at
        self.response = response


class RedisBlobStore:
    """Response blobs of one cache table in Redis (``redis.asyncio``; lazy connect).

    Client errors (``redis.exceptions.RedisError``, ``OSError``) are raised as
    :class:`~semanticcache.errors.StorageError`; the cache turns them into a fall-back to
    Postgres. No retries here: a failed call is reported at once, and the next call opens
    a new connection.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        ttl_seconds: int,
        timeout: float | None,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise ConfigurationError(INSTALL_HINT) from exc
        if isinstance(ttl_seconds, bool) or ttl_seconds < 1:
            raise ConfigurationError(f"redis ttl_seconds must be >= 1, not {ttl_seconds}")
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._prefix = f"semcache:{namespace}:".encode()
        self._ttl = ttl_seconds
        self._client: redis.asyncio.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )

    @property
    def ttl_seconds(self) -> int:
        """TTL of every blob written."""
        return self._ttl

    def key(self, partition: bytes, text_digest: bytes) -> bytes:
        """``semcache:<table>:<hex partition><hex text digest>``."""
        return self._prefix + partition.hex().encode() + text_digest.hex().encode()

    async def get(self, partition: bytes, text_digest: bytes) -> RedisBlob | None:
        """The blob stored for this exact key, or None (absent or unreadable)."""
        try:
            value = await self._client.get(self.key(partition, text_digest))
        except self._errors as exc:
            raise StorageError(f"redis GET failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, bytes) or len(value) < _HEADER.size:
            return None
        entry_id, created = _HEADER.unpack_from(value)
        return RedisBlob(entry_id, datetime.fromtimestamp(created, UTC), value[_HEADER.size :])

    async def set(
        self,
        partition: bytes,
        text_digest: bytes,
        *,
        entry_id: int,
        created_at: datetime,
        response: bytes,
    ) -> None:
        """Store a blob with the tier's TTL (replacing any)."""
        value = _HEADER.pack(entry_id, created_at.timestamp()) + response
        try:
            await self._client.set(self.key(partition, text_digest), value, ex=self._ttl)
        except self._errors as exc:
            raise StorageError(f"redis SET failed: {type(exc).__name__}: {exc}") from exc

    async def delete(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        """Delete the blobs of these (partition, text digest) keys, in batches."""
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [self.key(p, d) for p, d in keys[start : start + _DELETE_BATCH]]
            try:
                await self._client.delete(*batch)
            except self._errors as exc:
                raise StorageError(f"redis DEL failed: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Close the client's connections. Idempotent."""
        await self._client.aclose()
