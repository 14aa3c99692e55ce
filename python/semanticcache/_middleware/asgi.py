"""``SemanticCacheMiddleware``: the pure ASGI middleware, its configuration and what it
shares across requests (learnt ``Vary`` names, background stores, single-flight).

Each request's state lives in a :class:`~semanticcache._middleware.flow.Flow` made for it,
never on the middleware (one middleware instance serves every request concurrently).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semanticcache._cache import SemanticCache
from semanticcache._entry_token import entry_token
from semanticcache._middleware.extractors import Extractor
from semanticcache._middleware.flow import Flow
from semanticcache._middleware.headers import DEFAULT_CREDENTIAL_HEADERS, RouteKey
from semanticcache._middleware.singleflight import SingleFlight
from semanticcache._middleware.store_policy import STORABLE_EXTENSION, ResponseValidator, StoreTasks
from semanticcache._settings import CacheSettings, HitResponseMode, ResponseMode
from semanticcache.errors import ConfigurationError

__all__ = ["STORABLE_EXTENSION", "ResponseValidator", "SemanticCacheMiddleware"]

_DEFAULT_MAX_PENDING_STORES: Final = 1000
_DEFAULT_DRAIN_TIMEOUT: Final = 10.0
# Routes whose Vary names a middleware remembers; a forgotten one only costs hits.
_VARY_ROUTES: Final = 4096
_ENTRY_TOKENS: Final = 4096


class SemanticCacheMiddleware:
    """Pure ASGI middleware that serves similar requests from a :class:`SemanticCache`.

    Only requests whose method is in ``methods`` (default POST) and whose path starts
    with ``path_prefix`` (when given) are considered. See docs/middleware.md for the
    flow, the headers it adds, what is stored and the security notes on scope.

    ``extract_query`` / ``extract_model`` / ``extract_scope`` are ``(request, body) ->
    str | None`` callables (sync or async); by default query and model come from the
    native scan of the JSON body, and scope is empty unless ``trust_client_scope`` lets
    the client-sent ``X-Semantic-Cache-Scope`` / ``cache_scope`` / ``tenant_id`` in.
    ``validate_response(status, headers, body) -> bool`` has the last word on storing.
    ``credential_key`` keys the digest of the credentials (``Authorization``, cookies,
    API-key headers, see docs/middleware.md) that joins the scope (default: the
    settings' log digest key; set ``SEMANTIC_CACHE_LOG_DIGEST_KEY`` so workers and
    restarts share entries of authorized requests). ``route_key`` says what of the
    request's target keys an entry (:data:`~semanticcache._middleware.headers.RouteKey`;
    default the whole target, host included).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cache: SemanticCache,
        settings: CacheSettings | None = None,
        methods: Iterable[str] = ("POST",),
        path_prefix: str | None = None,
        extract_query: Extractor | None = None,
        extract_model: Extractor | None = None,
        extract_scope: Extractor | None = None,
        trust_client_scope: bool = False,
        validate_response: ResponseValidator | None = None,
        response_mode: ResponseMode | None = None,
        hit_response_mode: HitResponseMode | None = None,
        credential_key: bytes | None = None,
        max_pending_stores: int = _DEFAULT_MAX_PENDING_STORES,
        drain_timeout: float = _DEFAULT_DRAIN_TIMEOUT,
        single_flight: bool = True,
        single_flight_wait: float | None = None,
        route_key: RouteKey = "target",
    ) -> None:
        if not isinstance(cache, SemanticCache):
            raise ConfigurationError("cache must be a SemanticCache")
        self.app = app
        self.cache = cache
        self.settings = settings if settings is not None else cache.settings
        self.methods = frozenset(m.upper() for m in methods)
        self.path_prefix = path_prefix
        self.extract_query = extract_query
        self.extract_model = extract_model
        self.extract_scope = extract_scope
        self.trust_client_scope = trust_client_scope
        self.validate_response = validate_response
        mode = response_mode if response_mode is not None else self.settings.response_mode
        if mode not in ("buffered", "tee"):
            raise ConfigurationError(f"response_mode must be buffered or tee, not {mode!r}")
        self.response_mode: ResponseMode = mode
        hit_mode = (
            hit_response_mode if hit_response_mode is not None else self.settings.hit_response_mode
        )
        if hit_mode is None:
            hit_mode = "stream" if mode == "tee" else "single"
        if hit_mode not in ("single", "stream"):
            raise ConfigurationError(
                f"hit_response_mode must be single or stream, not {hit_mode!r}"
            )
        self.hit_response_mode: HitResponseMode = hit_mode
        self.credential_key = (
            credential_key if credential_key is not None else self.settings.effective_log_digest_key
        )
        if route_key not in ("target", "path_query", "path"):
            raise ConfigurationError(
                f"route_key must be target, path_query or path, not {route_key!r}"
            )
        self.route_key: RouteKey = route_key
        self.credential_headers = frozenset(DEFAULT_CREDENTIAL_HEADERS) | {
            name.encode("latin-1") for name in self.settings.credential_headers
        }
        self.credential_cookies = frozenset(self.settings.credential_cookies)
        # Hits name their entry by a token under this key (X-Cache-Entry); the tokens
        # of recent entries are kept (bounded), as popular entries are hit again.
        self.entry_key = self.settings.effective_log_digest_key
        self._entry_tokens: dict[int, bytes] = {}
        self.metrics = cache.metrics
        self.tracing = cache.tracing
        # The Vary names each route's latest stored response gave (bounded, least
        # recently used dropped): lookups key by them, see RequestKey.for_vary.
        self._vary: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.single_flight: SingleFlight | None = None
        if single_flight:
            # A lease outlives the longest app call it guards (then it expires alone).
            upstream = self.settings.upstream_timeout_seconds
            lease = max(30.0, 2 * upstream) if upstream is not None else 60.0
            self.single_flight = SingleFlight(
                cache, lease_seconds=lease, wait_seconds=single_flight_wait
            )
        # Store tasks release the single-flight lease they take over.
        self.stores = StoreTasks(
            cache,
            self.single_flight,
            max_pending=max_pending_stores,
            drain_timeout=drain_timeout,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if (
            scope["type"] != "http"
            or scope["method"] not in self.methods
            or (self.path_prefix is not None and not scope["path"].startswith(self.path_prefix))
        ):
            await self.app(scope, receive, send)
            return
        await Flow(self, scope, receive, send).run()

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                # Stores still running are finished before the app (and its cache) close.
                await self.drain()
            return message

        return wrapped

    def entry_header(self, entry_id: int) -> bytes:
        """The ``X-Cache-Entry`` value of entry ``entry_id`` of the cache's table."""
        token = self._entry_tokens.get(entry_id)
        if token is None:
            if len(self._entry_tokens) >= _ENTRY_TOKENS:
                self._entry_tokens.clear()
            token = entry_token(self.entry_key, self.cache.table, entry_id).encode()
            self._entry_tokens[entry_id] = token
        return token

    def vary_for(self, target: str) -> tuple[str, ...]:
        """The Vary names last stored for ``target`` (empty when none is known)."""
        names = self._vary.get(target)
        if names is None:
            return ()
        self._vary.move_to_end(target)
        return names

    def learn_vary(self, target: str, names: tuple[str, ...]) -> None:
        """Remember the Vary names of ``target``'s latest stored response."""
        if not names:
            self._vary.pop(target, None)
            return
        self._vary[target] = names
        self._vary.move_to_end(target)
        while len(self._vary) > _VARY_ROUTES:
            self._vary.popitem(last=False)

    @property
    def max_pending_stores(self) -> int:
        """Most stores in flight at once; past it a response is served, not stored."""
        return self.stores.max_pending

    @property
    def drain_timeout(self) -> float:
        """How long :meth:`drain` waits by default, in seconds."""
        return self.stores.drain_timeout

    @property
    def pending_stores(self) -> int:
        """Stores started and not finished yet."""
        return self.stores.pending

    async def drain(self, wait: float | None = None) -> None:
        """Wait for the stores in flight (at most ``wait`` seconds, default the
        constructor's ``drain_timeout``); those still running then are cancelled. Then
        try the single-flight releases that failed once more."""
        await self.stores.drain(wait)
        if self.single_flight is not None:
            await self.single_flight.flush()
