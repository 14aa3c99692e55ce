"""Prometheus metrics (the ``metrics`` extra): what the cache, the middleware and the
proxy record when ``SEMANTIC_CACHE_METRICS`` is on, and the ASGI app that serves them.

``prometheus_client`` is imported only when metrics are turned on or served: with them
off, the request path holds ``None`` where a :class:`Metrics` would be and pays one
``is not None`` per hook. Metric objects are created once per process (the registry
refuses a second family of one name) and shared by every cache of the process.

Labels stay bounded: ``route`` is the template of the app's route that matches the
request (``/items/{id}``), else the middleware's ``path_prefix``, else ``*``; never a
prompt, a scope or a raw path; ``table`` is the name of an open cache's table. With
``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts), ``prometheus_client``
keeps the values in files there and :func:`metrics_app` sums every worker's.
docs/observability.md lists the metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from semanticcache._breaker import BreakerState
from semanticcache._embedders.factory import extra_imports
from semanticcache._results import DECIDED_MISSES, CacheLookup

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from semanticcache._settings import CacheSettings
    from semanticcache._storage.pgvector import PgVectorStore

__all__ = [
    "NO_ROUTE",
    "Metrics",
    "current_route",
    "metrics_app",
    "metrics_for",
    "reset_route",
    "route_label",
    "set_route",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
NO_ROUTE: Final = "-"
"""The route label of a lookup made outside the middleware (a direct ``lookup()``)."""
ANY_ROUTE: Final = "*"
"""The route label of a request no route template (or ``path_prefix``) names."""

_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_UPSTREAM_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Fine where thresholds are set (0.85 to 1.0), coarse below.
_SIMILARITY_BUCKETS: Final = (
    0.5,
    0.6,
    0.7,
    0.75,
    0.8,
    0.85,
    0.88,
    0.9,
    0.92,
    0.94,
    0.95,
    0.96,
    0.97,
    0.98,
    0.99,
    1.0,
)
_BREAKER_VALUES: Final[dict[BreakerState, float]] = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
# Route labels remembered per (method, path); cleared when full (a bound on memory).
_ROUTE_MEMO: Final = 1024
# The table figures are read at most this often (a scrape in between serves the last
# ones), and a read gives up after _TABLE_READ_SECONDS (the scrape is served anyway).
_TABLE_FIGURES_SECONDS = 5.0
_TABLE_READ_SECONDS: Final = 2.0

_log = logging.getLogger(__name__)

_route: ContextVar[str] = ContextVar("semanticcache_metrics_route", default=NO_ROUTE)


def set_route(label: str) -> Token[str]:
    """The route label of the lookups and stores of the current request (and of the
    tasks it starts); :func:`reset_route` with the token ends it."""
    return _route.set(label)


def reset_route(token: Token[str]) -> None:
    _route.reset(token)


def current_route() -> str:
    return _route.get()


class Metrics:
    """This process's metric families (see docs/observability.md)."""

    def __init__(self) -> None:
        with extra_imports("metrics", "Prometheus metrics"):
            from prometheus_client import Counter, Gauge, Histogram
        self.lookups: Counter = Counter(
            "semcache_lookups",
            "Cache lookups by outcome: exact_hit, semantic_hit, or the miss reason.",
            ["outcome", "route"],
        )
        self.lookup_seconds: Histogram = Histogram(
            "semcache_lookup_seconds",
            "Time of a whole lookup (hot entries, Redis, embed, search, stage 2).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.embed_seconds: Histogram = Histogram(
            "semcache_embed_seconds",
            "Time of one embedder call (remembered embeddings not counted).",
            buckets=_LATENCY_BUCKETS,
        )
        self.search_seconds: Histogram = Histogram(
            "semcache_search_seconds",
            "Time of one similarity search in Postgres (with the exact probe when they "
            "share a round trip).",
            buckets=_LATENCY_BUCKETS,
        )
        self.store_seconds: Histogram = Histogram(
            "semcache_store_seconds",
            "Time of one successful put (embed when not remembered, insert, copies).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.nearest: Histogram = Histogram(
            "semcache_nearest_similarity",
            "Similarity of the nearest entry, for the lookups that searched, by outcome "
            "(hit, miss, rejected, disagreement, unverified).",
            ["outcome"],
            buckets=_SIMILARITY_BUCKETS,
        )
        self.bypasses: Counter = Counter(
            "semcache_bypasses",
            "Requests the middleware passed to the app without a lookup, by reason.",
            ["reason", "route"],
        )
        self.upstream_calls: Counter = Counter(
            "semcache_upstream_calls",
            "Calls to the app / upstream after a lookup that did not serve a hit.",
            ["route"],
        )
        self.upstream_seconds: Histogram = Histogram(
            "semcache_upstream_seconds",
            "Time of those calls, until the app returned.",
            ["route"],
            buckets=_UPSTREAM_BUCKETS,
        )
        self.saved_seconds: Counter = Counter(
            "semcache_upstream_seconds_saved",
            "Upstream time saved by served hits: the route's mean upstream time in this "
            "process per hit.",
            ["route"],
        )
        self.single_flight_wait: Histogram = Histogram(
            "semcache_single_flight_wait_seconds",
            "Time a miss waited on another request's identical call.",
            ["route"],
            buckets=_UPSTREAM_BUCKETS,
        )
        self.breaker_state: Gauge = Gauge(
            "semcache_breaker_state",
            "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open (the worst "
            "of the live processes).",
            ["dependency"],
            multiprocess_mode="livemax",
        )
        # Read at scrape time (metrics_app), from the catalog: never a count(*). Every
        # process reads the same figures: the most recent one stands.
        self.table_entries: Gauge = Gauge(
            "semcache_table_entries",
            "Entries per cache table: Postgres's row estimate (reltuples, kept by VACUUM "
            "and ANALYZE), read at most every few seconds.",
            ["table"],
            multiprocess_mode="livemostrecent",
        )
        self.table_bytes: Gauge = Gauge(
            "semcache_table_bytes",
            "Size of each cache table on disk: heap, indexes (HNSW included) and TOAST.",
            ["table"],
            multiprocess_mode="livemostrecent",
        )
        # The stores of this process's open caches, per table (several caches may share
        # one), and when their figures were last read.
        self._tables: dict[str, list[PgVectorStore]] = {}
        self._tables_read_at = float("-inf")
        self._lock = threading.Lock()
        # (family, labels) -> child: ``labels()`` checks and locks on every call.
        self._children: dict[tuple[object, ...], Any] = {}
        # Route label -> (sum, count) of upstream seconds: what a hit is taken to save.
        self._upstream: dict[str, tuple[float, int]] = {}

    def _child(self, family: Counter | Histogram | Gauge, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def lookup(self, result: CacheLookup, seconds: float) -> None:
        route = _route.get()
        hit = result.hit
        if hit is not None:
            outcome = "exact_hit" if hit.match == "exact" else "semantic_hit"
        else:
            outcome = result.reason
        self._child(self.lookups, outcome, route).inc()
        self._child(self.lookup_seconds, route).observe(seconds)
        nearest = result.nearest_similarity
        searched = (hit is None and result.reason in DECIDED_MISSES) or (
            hit is not None and hit.match == "semantic"
        )
        if nearest is not None and searched and nearest == nearest:  # NaN: no direction
            self._child(self.nearest, result.reason).observe(nearest)

    def embedded(self, seconds: float) -> None:
        self.embed_seconds.observe(seconds)

    def searched(self, seconds: float) -> None:
        self.search_seconds.observe(seconds)

    def stored(self, seconds: float) -> None:
        self._child(self.store_seconds, _route.get()).observe(seconds)

    def bypass(self, reason: str) -> None:
        # "extractor_error (KeyError)": the exception's type stays out of the label.
        self._child(self.bypasses, reason.split(" ", 1)[0], _route.get()).inc()

    def upstream(self, seconds: float) -> None:
        route = _route.get()
        self._child(self.upstream_calls, route).inc()
        self._child(self.upstream_seconds, route).observe(seconds)
        with self._lock:
            total, count = self._upstream.get(route, (0.0, 0))
            self._upstream[route] = (total + seconds, count + 1)

    def served_hit(self) -> None:
        route = _route.get()
        total, count = self._upstream.get(route, (0.0, 0))  # one read: no lock needed
        if count:
            self._child(self.saved_seconds, route).inc(total / count)

    def waited(self, seconds: float) -> None:
        self._child(self.single_flight_wait, _route.get()).observe(seconds)

    def breaker(self, dependency: str, state: BreakerState) -> None:
        self.breaker_state.labels(dependency).set(_BREAKER_VALUES[state])

    def watch_breaker(self, dependency: str) -> Callable[[BreakerState], None]:
        """The ``on_change`` of a new (closed) breaker of ``dependency``."""
        self.breaker(dependency, "closed")
        return functools.partial(self.breaker, dependency)

    def watch_table(self, store: PgVectorStore) -> None:
        """Report ``store``'s table in the table gauges (an open cache's)."""
        with self._lock:
            self._tables.setdefault(store.table, []).append(store)
        self._tables_read_at = float("-inf")  # a new table: read at the next scrape

    def unwatch_table(self, store: PgVectorStore) -> None:
        """Stop using ``store`` (its cache closed); the table's last figures stay."""
        with self._lock:
            stores = self._tables.get(store.table, [])
            if store in stores:
                stores.remove(store)
            if not stores:
                self._tables.pop(store.table, None)

    async def read_tables(self) -> None:
        """Set the table gauges from the catalog, unless they were read less than
        ``_TABLE_FIGURES_SECONDS`` ago. A table whose read fails keeps its last figures."""
        now = time.monotonic()
        if now - self._tables_read_at < _TABLE_FIGURES_SECONDS:
            return
        self._tables_read_at = now
        with self._lock:
            tables = {table: stores[0] for table, stores in self._tables.items() if stores}
        for table, store in tables.items():
            try:
                async with asyncio.timeout(_TABLE_READ_SECONDS):
                    entries, size = await store.table_figures()
            except Exception as exc:  # a closed pool, another loop: the scrape goes on
                _log.debug("table figures of %s not read: %s", table, exc)
                continue
            self._child(self.table_entries, table).set(entries)
            self._child(self.table_bytes, table).set(size)


_lock = threading.Lock()
_metrics: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's metrics, created (and ``prometheus_client`` imported) on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def metrics_for(settings: CacheSettings) -> Metrics | None:
    """The process's metrics when ``settings`` turn them on, else ``None``."""
    return process_metrics() if settings.records_metrics else None


_route_memo: dict[tuple[int, str | None, str, str], str] = {}


def route_label(scope: Scope, fallback: str | None) -> str:
    """The bounded route label of a request: the path template of the first route of
    the app (``scope["app"]``) that fully matches, else ``fallback``, else ``*``."""
    app = scope.get("app")
    memo_key = (id(app), fallback, scope.get("method", ""), scope.get("path", ""))
    label = _route_memo.get(memo_key)
    if label is not None:
        return label
    label = fallback if fallback is not None else ANY_ROUTE
    for route in getattr(app, "routes", ()):
        try:
            match, _ = route.matches(scope)
        except Exception:  # noqa: S112 - a route that cannot judge this request names none
            continue
        path = getattr(route, "path", None)
        if match is Match.FULL and isinstance(path, str):
            label = path
            break
    if len(_route_memo) >= _ROUTE_MEMO:
        _route_memo.clear()
    _route_memo[memo_key] = label
    return label


class _MetricsApp:
    """The exposition app; an instance (not a function), so that Starlette's ``Route``
    and ``Mount`` take it as a raw ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # a mounted app sees no lifespan; nothing else is served
        metrics = _metrics
        if metrics is not None:
            await metrics.read_tables()
        await self._app(scope, receive, send)


def metrics_app() -> ASGIApp:
    """An ASGI app that serves the metrics in the Prometheus text format, to mount in a
    Starlette / FastAPI app: ``app.mount("/metrics", semanticcache.metrics_app())``.

    With ``PROMETHEUS_MULTIPROC_DIR`` set it serves the sum over every process writing
    there (each worker of ``uvicorn --workers N``); else this process's registry.
    Needs the ``metrics`` extra.
    """
    with extra_imports("metrics", "semanticcache.metrics_app()"):
        from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
        from prometheus_client.multiprocess import MultiProcessCollector
    process_metrics()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return _MetricsApp(make_asgi_app(registry))
    return _MetricsApp(make_asgi_app(REGISTRY))
