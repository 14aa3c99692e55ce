"""``create_semantic_cache_proxy_app``: a FastAPI app that forwards to one upstream, with
:class:`~semanticcache.SemanticCacheMiddleware` in front of the forwarder."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

from fastapi import FastAPI
from starlette.routing import Mount, Route

from semanticcache._cache import SemanticCache
from semanticcache._middleware.asgi import ResponseValidator, SemanticCacheMiddleware
from semanticcache._middleware.extractors import Extractor
from semanticcache._middleware.headers import RouteKey
from semanticcache._proxy.forward import Forwarder
from semanticcache._settings import CacheSettings, HitResponseMode, ResponseMode
from semanticcache.errors import ConfigurationError, StorageError

__all__ = ["MiddlewareOptions", "create_semantic_cache_proxy_app"]

_log = logging.getLogger("semanticcache.proxy")


class MiddlewareOptions(TypedDict, total=False):
    """The :class:`~semanticcache.SemanticCacheMiddleware` keyword arguments
    the proxy passes on (same meaning and defaults)."""

    methods: Iterable[str]
    path_prefix: str | None
    extract_query: Extractor | None
    extract_model: Extractor | None
    extract_scope: Extractor | None
    trust_client_scope: bool
    validate_response: ResponseValidator | None
    response_mode: ResponseMode | None
    hit_response_mode: HitResponseMode | None
    credential_key: bytes | None
    max_pending_stores: int
    drain_timeout: float
    single_flight: bool
    single_flight_wait: float | None
    route_key: RouteKey


def create_semantic_cache_proxy_app(
    upstream: str,
    cache: SemanticCache,
    *,
    settings: CacheSettings | None = None,
    timeout: float | None = None,
    max_connections: int = 100,
    **middleware_options: Unpack[MiddlewareOptions],
) -> FastAPI:
    """A reverse proxy app: every request is forwarded to ``upstream`` (a base URL such
    as ``http://127.0.0.1:8000`` or ``https://api.example.com/v1``), and the requests
    the middleware considers (POST by default) are served from ``cache`` when a similar
    one was answered before.

    ``settings`` defaults to the cache's. ``timeout`` (seconds; default the settings'
    ``upstream_timeout_seconds``, ``None`` there means no limit) bounds connecting to
    the upstream, waiting for its response head (then 504) and each wait for the next
    body chunk. A refused or failed connection is a 502. ``max_connections`` caps the
    open upstream connections. Other keyword arguments go to
    :class:`~semanticcache.SemanticCacheMiddleware`.

    The app's lifespan opens the aiohttp session and the cache (a cache that cannot
    open is logged and the proxy starts anyway: requests pass through until it can),
    and at shutdown finishes the stores in flight, then closes both. Run it with
    lifespan on. With ``metrics_path`` set, GET on it serves the Prometheus metrics;
    with ``admin_token`` set, ``/_semcache/admin`` is the admin endpoint (docs/admin.md).
    Routes you add to the returned app take precedence; everything else is forwarded
    (the app has no /docs of its own, so the upstream's pass through).
    ``app.state`` holds ``semantic_cache``, ``semantic_cache_middleware`` and
    ``proxy_forwarder``.
    """
    if not isinstance(cache, SemanticCache):
        raise ConfigurationError("cache must be a SemanticCache")
    settings = settings if settings is not None else cache.settings
    forwarder = Forwarder(
        upstream,
        timeout=timeout if timeout is not None else settings.upstream_timeout_seconds,
        max_connections=max_connections,
        tracing=cache.tracing,
    )
    middleware = SemanticCacheMiddleware(
        forwarder, cache=cache, settings=settings, **middleware_options
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await forwarder.start()
        try:
            try:
                await cache.open()
            except StorageError as exc:
                # Fail open, as every request does: the cache retries on first use.
                _log.warning("semantic cache: not available at start-up, passing through: %s", exc)
            yield
        finally:
            # Stores still running need the cache: finish them before closing it.
            await middleware.drain()
            await forwarder.close()
            await cache.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # The router's fallback: requests no user route matches go through the cache to
    # the upstream (routes added to the app later still win).
    app.router.default = middleware
    if settings.metrics_path is not None:
        from semanticcache._metrics import metrics_app

        # A route of the app, so it answers before the fallback forwards anything.
        app.router.routes.append(Route(settings.metrics_path, metrics_app(), methods=["GET"]))
    if settings.admin_token is not None:
        from semanticcache._admin import ADMIN_PATH, admin_app

        app.router.routes.append(Mount(ADMIN_PATH, admin_app(cache, token=settings.admin_token)))
    app.state.semantic_cache = cache
    app.state.semantic_cache_middleware = middleware
    app.state.proxy_forwarder = forwarder
    return app
