"""The Redis blob tier: response blobs by exact key, with a TTL, in front of Postgres.

Postgres stays the source of truth (every row keeps its response); Redis holds a copy of
each blob under the row's exact key (partition digest + lookup-text digest), so an exact
repeat is one Redis ``GET`` and no Postgres query. Redis may lose blobs at any time
(flush, eviction, restart, TTL): the cache then finds the row in Postgres.

A copy never outlives its row and is never served after the row changed:

- **Versions.** Each value starts with the row's version: its id and its ``created_at``
  in microseconds (a replace moves ``created_at`` forward under the row lock, and a row
  inserted after a delete gets a larger id), then the epoch it was written under (see
  below). Every write is a compare-and-set in a Lua script: a value is only replaced by
  a newer version, so concurrent ``put`` calls and late background refills cannot put an
  older answer back over a newer one.
- **Tombstones.** A deleted row's key gets a tombstone (its id, then the largest
  possible version) instead of a ``DEL``: a refill that read the row just before the
  delete can no longer write it back. A lookup reads a tombstone as "absent".
- **Epochs.** When Redis could not take a write that replaced or deleted a row (an
  error, a timeout, an open breaker, no ``SEMANTIC_CACHE_REDIS_URI`` where rows were
  deleted), the cache cannot know what Redis still holds: it advances the table's epoch
  in Postgres (``semcache_redis_epochs``) before the call returns, and every process
  learns it by ``NOTIFY`` (see :mod:`semanticcache._storage.hot`). Copies written under
  an older epoch are not served; refills replace them.
- **TTL.** A copy's TTL is the smaller of the tier's TTL and the row's remaining
  lifetime; a row with none left gets no copy.

Value layout: 8-byte big-endian entry id, 8-byte ``created_at`` (microseconds since the
Unix epoch), 8-byte epoch, one kind byte (``B`` a blob, ``T`` a tombstone), then the
response bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from semanticcache._masking import mask_connection_string
from semanticcache._redis_uri import RedisNodes, parse_redis_nodes
from semanticcache.errors import ConfigurationError, StorageError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["INSTALL_HINT", "RedisBlob", "RedisBlobStore", "RedisTimeoutError", "version_micros"]

INSTALL_HINT: Final = (
    'the Redis tier needs the "redis" extra: pip install "fastapi-semcache[redis]" '
    "(or unset SEMANTIC_CACHE_REDIS_URI)"
)
_HEADER: Final = struct.Struct(">qqqc")
_BLOB: Final = b"B"
_TOMBSTONE: Final = b"T"
_NEWEST: Final = 2**63 - 1
_BATCH: Final = 500
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# KEYS[i] gets ARGV[i] unless it holds a version (the first 24 bytes: id, created_at,
# epoch, big-endian and never negative, so bytewise order is numeric order) at least as
# new; ARGV[#KEYS + 1] is the TTL in milliseconds. Returns how many were written.
_COMPARE_AND_SET: Final = """
local ttl = ARGV[#KEYS + 1]
local written = 0
for i, key in ipairs(KEYS) do
  local new = ARGV[i]
  local old = redis.call('GET', key)
  local newer = true
  if old and #old >= 24 then
    newer = false
    for j = 1, 24 do
      local a, b = string.byte(old, j), string.byte(new, j)
      if a ~= b then
        newer = b > a
        break
      end
    end
  end
  if newer then
    redis.call('SET', key, new, 'PX', ttl)
    written = written + 1
  end
end
return written
"""


class RedisTimeoutError(StorageError):
    """A Redis call ran past its timeout."""


def version_micros(created_at: datetime) -> int:
    """``created_at`` as whole microseconds since the Unix epoch (exact, no float)."""
    return (created_at - _UNIX_EPOCH) // timedelta(microseconds=1)


class RedisBlob:
    """A blob read back from Redis."""

    __slots__ = ("created_at", "entry_id", "epoch", "response")

    def __init__(self, entry_id: int, created_at: datetime, epoch: int, response: bytes) -> None:
        self.entry_id = entry_id
        self.created_at = created_at
        self.epoch = epoch
        """The epoch it was written under: servable while it is not older than the
        table's."""
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
            from redis.exceptions import RedisClusterException, RedisError
            from redis.exceptions import TimeoutError as RedisTimeout
        except ImportError as exc:
            raise ConfigurationError(INSTALL_HINT) from exc
        if isinstance(ttl_seconds, bool) or ttl_seconds < 1:
            raise ConfigurationError(f"redis ttl_seconds must be >= 1, not {ttl_seconds}")
        # A cluster client's own failures (no node reachable, slots not covered) are not
        # RedisError.
        self._errors: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
        self._timeouts: tuple[type[BaseException], ...] = (RedisTimeout, TimeoutError)
        self._prefix = f"semcache:{namespace}:".encode()
        self._ttl = ttl_seconds
        try:
            nodes = parse_redis_nodes(url)
        except ValueError as exc:
            raise ConfigurationError(f"redis URI {exc}: {mask_connection_string(url)!r}") from None
        self._cluster = nodes is not None and nodes.mode == "cluster"
        self._sentinel: redis.asyncio.Sentinel | None = None
        self._client: redis.asyncio.Redis | redis.asyncio.RedisCluster
        # The primaries the client writes to now (empty: none known yet), in the
        # modes where a replica can take a primary's place.
        self._current_primaries: Callable[[], frozenset[str]] | None = None
        if nodes is None:
            self._client = aioredis.Redis.from_url(url, **_single_options(timeout))
        elif nodes.mode == "cluster":
            cluster = _cluster_client(nodes, timeout)
            self._client = cluster
            self._current_primaries = lambda: frozenset(n.name for n in cluster.get_primaries())
        else:
            self._sentinel, master = _sentinel_client(nodes, timeout)
            self._client = master
            pool = master.connection_pool
            self._current_primaries = lambda: _address(getattr(pool, "master_address", None))
        self._compare_and_set = self._client.register_script(_COMPARE_AND_SET)
        self._primaries: frozenset[str] | None = None
        self._failovers = 0
        self._failovers_voided = 0

    @property
    def ttl_seconds(self) -> int:
        """TTL of every blob written."""
        return self._ttl

    def key(self, partition: bytes, text_digest: bytes) -> bytes:
        """``semcache:<table>:{<hex partition><hex text digest>}``: the braces are a
        Redis Cluster hash tag, so that every key of one entry maps to one slot."""
        return b"%b{%b%b}" % (self._prefix, partition.hex().encode(), text_digest.hex().encode())

    async def get(self, partition: bytes, text_digest: bytes) -> RedisBlob | None:
        """The blob stored for this exact key, or None (absent, a tombstone, or
        unreadable)."""
        try:
            value = await self._client.get(self.key(partition, text_digest))
        except self._errors as exc:
            raise self._failed("GET", exc) from exc
        finally:
            self._note_primaries()
        if not isinstance(value, bytes) or len(value) < _HEADER.size:
            return None
        entry_id, micros, epoch, kind = _HEADER.unpack_from(value)
        if kind != _BLOB:
            return None
        created = _UNIX_EPOCH + timedelta(microseconds=micros)
        return RedisBlob(entry_id, created, epoch, value[_HEADER.size :])

    async def set(
        self,
        partition: bytes,
        text_digest: bytes,
        *,
        entry_id: int,
        created_at: datetime,
        epoch: int,
        response: bytes,
        ttl_ms: int,
    ) -> bool:
        """Store a blob for ``ttl_ms`` (at most the tier's TTL) unless the key holds this
        version or a newer one (or a tombstone of this row); whether it was written."""
        ttl = max(1, min(ttl_ms, self._ttl * 1000))
        value = _HEADER.pack(entry_id, version_micros(created_at), epoch, _BLOB) + response
        try:
            written = await self._compare_and_set(
                keys=[self.key(partition, text_digest)], args=[value, ttl]
            )
        except self._errors as exc:
            raise self._failed("SET", exc) from exc
        finally:
            self._note_primaries()
        return bool(written)

    async def bury(self, rows: Sequence[tuple[bytes, bytes, int]]) -> None:
        """Replace the blobs of these deleted rows ((partition, text digest, id)) with
        tombstones, in batches; a newer row's blob under the same key stays."""
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            keys = [self.key(p, d) for p, d, _ in batch]
            values: list[bytes] = [
                _HEADER.pack(entry_id, _NEWEST, _NEWEST, _TOMBSTONE) for _, _, entry_id in batch
            ]
            try:
                if self._cluster:
                    await self._bury_by_slot(keys, values)
                else:
                    await self._compare_and_set(keys=keys, args=[*values, self._ttl * 1000])
            except self._errors as exc:
                raise self._failed("tombstone", exc) from exc
            finally:
                self._note_primaries()

    async def _bury_by_slot(self, keys: list[bytes], values: list[bytes]) -> None:
        """One script call per hash slot (a cluster refuses a script whose keys span
        slots), sent as one pipeline: a round trip per node."""
        from redis.crc import key_slot

        slots: dict[int, tuple[list[bytes], list[bytes | int]]] = {}
        for key, value in zip(keys, values, strict=True):
            slot_keys, slot_values = slots.setdefault(key_slot(key), ([], []))
            slot_keys.append(key)
            slot_values.append(value)
        ttl_ms = self._ttl * 1000
        # EVAL, not EVALSHA: a node that never saw the script (a new primary) runs it too.
        async with self._client.pipeline(transaction=False) as pipe:
            for slot_keys, slot_values in slots.values():
                pipe.eval(_COMPARE_AND_SET, len(slot_keys), *slot_keys, *slot_values, ttl_ms)
            await pipe.execute()

    @property
    def failovers(self) -> int:
        """How many times a new primary was seen: a new master named by Sentinel, or a
        node that became a cluster primary. Writes acknowledged by the old primary may
        not have reached the new one (replication is asynchronous), so a tombstone or a
        newer copy may be gone and an older copy back: until :meth:`failovers_voided`
        is told of an epoch advance, no copy should be served."""
        return self._failovers

    @property
    def failover_pending(self) -> bool:
        """Whether a failover was seen and no epoch advance was reported after it."""
        return self._failovers > self._failovers_voided

    def failovers_voided(self, seen: int) -> None:
        """The table's epoch was advanced after the first ``seen`` failovers."""
        self._failovers_voided = max(self._failovers_voided, seen)

    def _note_primaries(self) -> None:
        if self._current_primaries is None:
            return
        now = self._current_primaries()
        if not now:
            return  # not connected yet
        if self._primaries is not None and not now <= self._primaries:
            self._failovers += 1
        self._primaries = now

    def _failed(self, what: str, exc: BaseException) -> StorageError:
        kind = RedisTimeoutError if isinstance(exc, self._timeouts) else StorageError
        return kind(f"redis {what} failed: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Close the client's connections (and the Sentinels'). Idempotent."""
        try:
            await self._client.aclose()
        finally:
            if self._sentinel is not None:
                await self._sentinel.aclose()


def _address(address: object) -> frozenset[str]:
    """A Sentinel pool's master address (``(host, port)``, or None) as a set of names."""
    if isinstance(address, tuple) and len(address) == 2:
        return frozenset({f"{address[0]}:{address[1]}"})
    return frozenset()


def _single_options(timeout: float | None) -> dict[str, Any]:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }


def _cluster_client(nodes: RedisNodes, timeout: float | None) -> redis.asyncio.RedisCluster:
    """redis-py's cluster client on the startup nodes: no retries (a failure falls back
    to Postgres at once; the next command refreshes the slot map), and usable while some
    slots are not covered (a dead primary without a replica only loses its slots)."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes.nodes],
        username=nodes.username,
        password=nodes.password,
        ssl=nodes.tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        require_full_coverage=False,
    )


def _sentinel_client(
    nodes: RedisNodes, timeout: float | None
) -> tuple[redis.asyncio.Sentinel, redis.asyncio.Redis]:
    """The Sentinels, and a client of the master they name: each new connection asks
    them for the master's address, so after a failover the next connection reaches the
    new master (one to a demoted master is dropped on its first refused write)."""
    from redis.asyncio.sentinel import Sentinel

    sentinels = Sentinel(
        list(nodes.nodes),
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "password": nodes.sentinel_password,
        },
    )
    master = sentinels.master_for(
        nodes.service,
        db=nodes.db,
        username=nodes.username,
        password=nodes.password,
        **_single_options(timeout),
    )
    return sentinels, master
