"""``SemanticCacheMiddleware``: the pure ASGI request flow (gate, key, lookup, replay, store).

Per-request state lives in a :class:`_Flow` object made for each request, never on the
middleware (one middleware instance serves every request concurrently).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semanticcache import _native
from semanticcache._offload import off_loop_if_long
from semanticcache.cache import CacheHit, SemanticCache
from semanticcache.errors import ConfigurationError, RequestBodyError, StreamFormatError
from semanticcache.key import MAX_SCOPE_BYTES, CacheKey
from semanticcache.middleware.core.extractors import Extractor, client_extract_scope
from semanticcache.middleware.headers import (
    DEFAULT_CREDENTIAL_HEADERS,
    HOP_BY_HOP,
    RouteKey,
    credential_bytes,
    credential_entries,
    request_target,
    vary_names,
    vary_route,
)
from semanticcache.middleware.record import StoredResponse, decode_record, encode_record
from semanticcache.middleware.singleflight import Lease, SingleFlight
from semanticcache.settings import CacheSettings, HitResponseMode, ResponseMode

__all__ = ["STORABLE_EXTENSION", "ResponseValidator", "SemanticCacheMiddleware"]

_log = logging.getLogger("semanticcache.middleware")

ResponseValidator = Callable[[int, Sequence[tuple[bytes, bytes]], bytes], "bool | Awaitable[bool]"]
"""``(status, headers, body) -> bool``: whether a response the store policy accepts may
be stored (sync or async)."""

XCache = Literal["HIT", "MISS", "BYPASS", "ERROR"]

STORABLE_EXTENSION: Final = "semanticcache.storable"
"""Key the middleware adds to ``scope["extensions"]`` (value ``{}``) when it calls the app
for a response it may store. Stored responses must be identity-encoded (one with a
``Content-Encoding`` is never stored), so an app that can choose, such as the proxy's
forwarder, answers those requests uncompressed."""

# What a replay must never carry: hop-by-hop fields, cookies and credentials (they belong
# to the first client; request credentials too, should a response echo one), the length
# (recomputed), and our own.
_NEVER_REPLAYED: Final = (
    HOP_BY_HOP
    | frozenset(DEFAULT_CREDENTIAL_HEADERS)
    | {
        b"set-cookie",
        b"set-cookie2",
        b"www-authenticate",
        b"authentication-info",
        b"content-length",
        b"date",
        b"age",
        b"x-cache",
        b"x-cache-similarity",
        b"x-cache-match",
    }
)
_SSE_TYPE: Final = b"text/event-stream"
_JSON_TYPE: Final = b"application/json"
_SSE_REPLAY_TYPE: Final = b"text/event-stream; charset=utf-8"
_REQUEST_ID_HEADER: Final = b"x-request-id"
_REQUEST_ID_SAFE: Final = re.compile(rb"[^A-Za-z0-9._:-]")
_DIGEST_HEX: Final = 16
# Stores in flight at once; past this a response is served but not stored, so a slow
# Postgres cannot make memory grow without bound.
_DEFAULT_MAX_PENDING_STORES: Final = 1000
_DEFAULT_DRAIN_TIMEOUT: Final = 10.0
_TIMEOUT_BODY: Final = b'{"detail":"upstream timed out"}'
# Routes whose Vary names a middleware remembers; a forgotten one only costs hits.
_VARY_ROUTES: Final = 4096


@dataclass(frozen=True, slots=True)
class _CacheControl:
    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None


_MAX_AGE_CAP: Final = 2**31
_MAX_AGE_DIGITS: Final = 11


def _parse_cache_control(values: Iterable[bytes]) -> _CacheControl:
    no_store = no_cache = False
    max_age: int | None = None
    for value in values:
        for raw in value.split(b","):
            name, _, arg = raw.strip().partition(b"=")
            name = name.strip().lower()
            if name == b"no-store":
                no_store = True
            elif name == b"no-cache":
                no_cache = True
            elif name == b"max-age":
                digits = arg.strip().strip(b'"')
                if digits.isdigit():
                    # Past 2**31 means "any age" (RFC 9111, 1.2.2); never int() a
                    # thousands-digit value (CPython refuses it: a 500 before the app).
                    significant = digits.lstrip(b"0") or b"0"
                    age = (
                        _MAX_AGE_CAP
                        if len(significant) > _MAX_AGE_DIGITS
                        else min(int(significant), _MAX_AGE_CAP)
                    )
                    # Several max-age values: the strictest wins.
                    max_age = age if max_age is None else min(max_age, age)
                else:
                    # An unreadable max-age must not widen what is served.
                    max_age = 0
    return _CacheControl(no_store, no_cache, max_age)


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def _replayable_headers(
    headers: Iterable[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()
) -> tuple[tuple[bytes, bytes], ...]:
    # Fields the response's own Connection header names are hop-by-hop too; ``extra``
    # holds the configured credential headers.
    named = {
        token.strip().lower()
        for value in _header_values(headers, b"connection")
        for token in value.split(b",")
    }
    return tuple(
        (n.lower(), v)
        for n, v in headers
        if n.lower() not in _NEVER_REPLAYED and n.lower() not in named | extra
    )


def _is_sse(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == _SSE_TYPE


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    values = _header_values(headers, b"content-type")
    return values[0] if values else b""


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
    request's target keys an entry (:data:`~semanticcache.middleware.headers.RouteKey`;
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
        # The Vary names each route's latest stored response gave (bounded, least
        # recently used dropped): lookups key by them, see _Flow.key_for.
        self._vary: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        if isinstance(max_pending_stores, bool) or max_pending_stores < 1:
            raise ConfigurationError("max_pending_stores must be >= 1")
        self.max_pending_stores = max_pending_stores
        self.drain_timeout = drain_timeout
        self._stores: set[asyncio.Task[None]] = set()
        self.single_flight: SingleFlight | None = None
        if single_flight:
            # A lease outlives the longest app call it guards (then it expires alone).
            upstream = self.settings.upstream_timeout_seconds
            lease = max(30.0, 2 * upstream) if upstream is not None else 60.0
            self.single_flight = SingleFlight(
                cache, lease_seconds=lease, wait_seconds=single_flight_wait
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
        await _Flow(self, scope, receive, send).run()

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                # Stores still running are finished before the app (and its cache) close.
                await self.drain()
            return message

        return wrapped

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
    def pending_stores(self) -> int:
        """Stores started and not finished yet."""
        return len(self._stores)

    async def drain(self, wait: float | None = None) -> None:
        """Wait for the stores in flight (at most ``wait`` seconds, default the
        constructor's ``drain_timeout``); those still running then are cancelled."""
        if not self._stores:
            return
        limit = self.drain_timeout if wait is None else wait
        _done, pending = await asyncio.wait(set(self._stores), timeout=limit)
        for task in pending:
            task.cancel()
        if pending:
            _log.warning("semantic cache: %d stores cancelled at shutdown", len(pending))
            await asyncio.wait(pending)

    def _store_later(
        self, key: CacheKey, record: bytes, log_fields: str, lease: Lease | None
    ) -> bool:
        """Start storing ``record``; the store task releases ``lease`` when done.
        ``False`` (nothing started, ``lease`` untouched) when too many are in flight."""
        if len(self._stores) >= self.max_pending_stores:
            _log.warning("semantic cache: store skipped, too many in flight %s", log_fields)
            return False
        task = asyncio.get_running_loop().create_task(self._store(key, record, log_fields, lease))
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)
        return True

    async def _store(
        self, key: CacheKey, record: bytes, log_fields: str, lease: Lease | None
    ) -> None:
        try:
            # SemanticCache.put fails open (logs, returns None) on dependency errors.
            entry_id = await self.cache.put(key, record)
        finally:
            # Waiters look the cache up once the lease is gone: store first.
            if lease is not None and self.single_flight is not None:
                await self.single_flight.release(lease)
        if entry_id is None:
            _log.info("semantic cache: response not stored %s", log_fields)
        else:
            _log.debug("semantic cache: stored entry=%d %s", entry_id, log_fields)


async def _call_extractor(extractor: Extractor, request: Request, body: bytes) -> str | None:
    """The extractor's answer; a failing extractor makes the request a bypass (fail
    open: the app still answers), logged by exception type only (messages may quote
    the body)."""
    try:
        result = extractor(request, body)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise _Bypass(f"extractor_error ({type(exc).__name__})") from None
    if result is not None and not isinstance(result, str):
        raise _Bypass(f"extractor_error (returned {type(result).__name__})")
    return result


class _Bypass(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Flow:
    """One request's way through the middleware."""

    def __init__(self, mw: SemanticCacheMiddleware, scope: Scope, receive: Receive, send: Send):
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        self.target = request_target(scope, mw.route_key)
        # The key without its route, set by _prepare; key_for adds the route.
        self.base_key: CacheKey | None = None
        # The Vary names of the last key made: a hit must have been stored with them.
        self.vary: tuple[str, ...] = ()
        self.request_id = self._request_id()
        self.scope_digest = "-"
        self.text_digest = "-"
        # The client went away before the response was complete (an aborted response).
        self.disconnected = False
        self.response_done = False
        # Body chunks read so far, replayed to the app before the real receive().
        self.chunks: list[bytes] = []
        self.body_complete = False

    def _request_id(self) -> str:
        values = _header_values(self.headers, _REQUEST_ID_HEADER)
        if values:
            # Client-sent: keep it short and log-safe (no new lines, no escapes).
            return _REQUEST_ID_SAFE.sub(b"", values[0])[:64].decode("ascii") or "-"
        return secrets.token_hex(8)

    def _digest(self, value: str) -> str:
        return _native.hmac_sha256_hex(
            self.mw.settings.effective_log_digest_key,
            value.encode("utf-8", "surrogatepass"),
            _DIGEST_HEX,
        )

    def log_fields(self, reason: str | None = None) -> str:
        fields = (
            f"route={self.scope['path']} scope={self.scope_digest} "
            f"request_id={self.request_id} text={self.text_digest}"
        )
        return fields if reason is None else f"{fields} reason={reason}"

    # --- the flow -------------------------------------------------------------------

    async def run(self) -> None:
        try:
            key, control, stream = await self._prepare()
        except _Bypass as exc:
            _log.debug("semantic cache: bypass %s", self.log_fields(exc.reason))
            await self._pass_through("BYPASS")
            return
        mw = self.mw
        outcome: XCache = "MISS"
        lease: Lease | None = None
        if not control.no_cache:
            lookup = await mw.cache.lookup(key)
            hit = lookup.hit
            if hit is None and lookup.reason not in ("miss", "rejected", "disagreement"):
                outcome = "ERROR"
                _log.warning("semantic cache: lookup failed %s", self.log_fields(lookup.reason))
            elif hit is None:
                # The nearest similarity (a number, nothing of the prompt) is what a
                # threshold is tuned on.
                nearest = lookup.nearest_similarity
                _log.debug(
                    "semantic cache: miss %s nearest=%s",
                    self.log_fields(lookup.reason),
                    "none" if nearest is None else f"{nearest:.4f}",
                )
            if (
                hit is not None
                and self._fresh_enough(hit, control)
                and await self._replay(hit, stream)
            ):
                return
            if outcome == "MISS" and mw.single_flight is not None:
                lease = await mw.single_flight.acquire(key)
                if lease.role == "waited":
                    # The leader has finished: its answer is stored now (under the Vary
                    # names it may just have taught us), or it gave up.
                    key = await self.key_for(mw.vary_for(self.target))
                    hit = (await mw.cache.lookup(key)).hit
                    if (
                        hit is not None
                        and self._fresh_enough(hit, control)
                        and await self._replay(hit, stream)
                    ):
                        return
                    lease = None
        # The key to store under follows from the response's Vary (_call_app_and_store).
        await self._call_app(control, outcome, lease)

    async def key_for(self, vary: tuple[str, ...]) -> CacheKey:
        """This request's key for a response that varies on ``vary``: the target plus
        the request's values of those headers make the route, so only a request with
        the same values shares the entry."""
        base = self.base_key
        assert base is not None, "key_for before _prepare"
        self.vary = vary
        digests = {
            name: self._credential_digest([(name, [v.decode("latin-1") for v in values])])
            for name in vary
            if name.encode("latin-1") in self.mw.credential_headers
            and (values := _header_values(self.headers, name.encode("latin-1")))
        }
        route = vary_route(self.target, vary, self.headers, digests)
        # replace() computes the key's digests again: off the loop for a long text.
        return await off_loop_if_long(
            len(base.text), lambda: dataclasses.replace(base, route=route)
        )

    def _credential_digest(self, entries: list[tuple[str, list[str]]]) -> str:
        return _native.hmac_sha256_hex(self.mw.credential_key, credential_bytes(entries))

    async def _prepare(self) -> tuple[CacheKey, _CacheControl, bool]:
        mw = self.mw
        credentials = credential_entries(self.headers, mw.credential_headers, mw.credential_cookies)
        if credentials and not mw.settings.cache_authorized_requests:
            # Named after the first kind present ("authorization", "cookie", "x_api_key").
            raise _Bypass(credentials[0][0].split(":", 1)[0].replace("-", "_"))
        control = _parse_cache_control(_header_values(self.headers, b"cache-control"))
        if control.no_store and control.no_cache:
            # Neither served nor stored: nothing to do for the cache.
            raise _Bypass("cache_control")
        body = await self._read_body()
        try:
            scan = await off_loop_if_long(
                len(body),
                lambda: _native.scan_request(body, max_bytes=mw.settings.max_body_bytes),
            )
        except RequestBodyError as exc:
            raise _Bypass(f"body_{exc.kind}") from None
        request = Request(self.scope, self._replay_receive())
        tenant = ""
        if mw.extract_scope is not None:
            tenant = await _call_extractor(mw.extract_scope, request, body) or ""
        elif mw.trust_client_scope:
            tenant = client_extract_scope(request, body) or ""
        if "\x00" in tenant:
            raise _Bypass("bad_scope")
        if mw.settings.require_cache_scope and not tenant:
            raise _Bypass("no_scope")
        partition_scope = tenant
        if credentials:
            # A keyed digest of every credential (names and values) joins the scope, so
            # two callers, or a caller and an anonymous request, never share an entry.
            # NUL cannot occur in a tenant scope, so this cannot be forged.
            partition_scope = f"\x00auth:{self._credential_digest(credentials)}\x00{tenant}"
        if len(partition_scope.encode("utf-8", "surrogatepass")) > MAX_SCOPE_BYTES:
            raise _Bypass("scope_too_long")
        self.scope_digest = self._digest(partition_scope) if partition_scope else "-"
        text = scan.query
        if mw.extract_query is not None:
            text = await _call_extractor(mw.extract_query, request, body)
        model = scan.model
        if mw.extract_model is not None:
            model = await _call_extractor(mw.extract_model, request, body)
        if text is None:
            raise _Bypass("no_query")

        def make_key(text: str) -> CacheKey:
            # Normalising and hashing a long text: off the loop past OFF_LOOP_CHARS.
            self.text_digest = self._digest(text)
            return CacheKey(
                text=text,
                scope=partition_scope,
                route=self.target,
                model=model,
                params_digest=scan.params_digest,
                context_digest=scan.context_digest,
            )

        self.base_key = await off_loop_if_long(len(text), lambda: make_key(text))
        return await self.key_for(mw.vary_for(self.target)), control, scan.stream is True

    async def _read_body(self) -> bytes:
        cap = self.mw.settings.max_body_bytes
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise _Bypass("disconnected")
            chunk: bytes = message.get("body", b"")
            if chunk:
                self.chunks.append(chunk)
                size += len(chunk)
            if not message.get("more_body", False):
                self.body_complete = True
                break
            if size > cap:
                raise _Bypass("body_too_large")
        if size > cap:
            raise _Bypass("body_too_large")
        return b"".join(self.chunks)

    def _replay_receive(self) -> Receive:
        """The app's receive(): the chunks read so far, each as it came, then the real
        receive(), which waits for the client's next message (a disconnect, usually)."""
        # A deque: a body can come in very many small chunks (popping a list's head
        # would make replaying them quadratic).
        pending = deque(self.chunks)
        complete = self.body_complete
        disconnected = self.disconnected
        if not pending and complete:
            pending.append(b"")

        async def receive() -> Message:
            if pending:
                chunk = pending.popleft()
                more = bool(pending) or not complete
                return {"type": "http.request", "body": chunk, "more_body": more}
            if disconnected:
                return {"type": "http.disconnect"}
            message = await self.receive()
            if message["type"] == "http.disconnect" and not self.response_done:
                self.disconnected = True
            return message

        return receive

    async def _pass_through(self, outcome: XCache) -> None:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, [(b"x-cache", outcome.encode())])
            await self.send(message)

        await self.mw.app(self.scope, self._replay_receive(), send)

    def _fresh_enough(self, hit: CacheHit, control: _CacheControl) -> bool:
        if control.max_age is None:
            return True
        return _age_seconds(hit) <= control.max_age

    # --- hits -----------------------------------------------------------------------

    async def _replay(self, hit: CacheHit, stream: bool) -> bool:
        """Send ``hit`` in the shape the client asked for; ``False`` when it cannot be
        (a damaged record, or a body that does not convert): the app answers then."""
        record = decode_record(hit.response)
        if record is None:
            _log.warning("semantic cache: unreadable entry %s", self.log_fields("bad_record"))
            return False
        if vary_names(record.headers) != self.vary:
            # Stored under other Vary names than this lookup keyed by: by construction
            # it cannot be, but a variant is served only to the values it was made for.
            _log.warning("semantic cache: entry of another variant %s", self.log_fields("vary"))
            return False
        body = record.body
        headers = list(record.headers)
        sse = record.sse
        try:
            if stream and not sse:
                body = _native.render_chat_completion_sse(body)
                sse = True
                headers = _set_header(headers, b"content-type", _SSE_REPLAY_TYPE)
            elif not stream and sse:
                body = _native.assemble_chat_completion(body)
                sse = False
                headers = _set_header(headers, b"content-type", _JSON_TYPE)
        except StreamFormatError as exc:
            _log.info("semantic cache: hit not convertible %s", self.log_fields(exc.kind))
            return False
        headers += [
            (b"content-length", str(len(body)).encode()),
            (b"x-cache", b"HIT"),
            (b"x-cache-similarity", f"{hit.similarity:.4f}".encode()),
            (b"x-cache-match", hit.match.encode()),
            (b"age", str(int(_age_seconds(hit))).encode()),
        ]
        _log.debug("semantic cache: hit %s", self.log_fields(hit.match))
        await self.send(
            {"type": "http.response.start", "status": record.status, "headers": headers}
        )
        if sse and self.mw.hit_response_mode == "stream":
            events = _split_events(body)
            for i, event in enumerate(events):
                last = i == len(events) - 1
                await self.send(
                    {"type": "http.response.body", "body": event, "more_body": not last}
                )
        else:
            await self.send({"type": "http.response.body", "body": body, "more_body": False})
        return True

    # --- misses ---------------------------------------------------------------------

    async def _call_app(self, control: _CacheControl, outcome: XCache, lease: Lease | None) -> None:
        mw = self.mw
        handed_over = False
        try:
            handed_over = await self._call_app_and_store(control, outcome, lease)
        finally:
            if lease is not None and not handed_over and mw.single_flight is not None:
                await mw.single_flight.release(lease)

    async def _call_app_and_store(
        self, control: _CacheControl, outcome: XCache, lease: Lease | None
    ) -> bool:
        """Call the app, send its answer, start the store; whether a store task took
        over ``lease``."""
        mw = self.mw
        responder = _Responder(self, outcome, tee=mw.response_mode == "tee")
        timeout = mw.settings.upstream_timeout_seconds
        scope = self.scope if control.no_store else _storable(self.scope)
        try:
            async with asyncio.timeout(timeout) as deadline:
                if timeout is not None:
                    responder.keep_alive = (deadline, timeout)
                await mw.app(scope, self._replay_receive(), responder.send)
        except TimeoutError:
            _log.warning("semantic cache: upstream timed out %s", self.log_fields("timeout"))
            await responder.timed_out()
            return False
        await responder.finish()
        stored = responder.stored_response()
        if stored is None or control.no_store or self.disconnected:
            return False
        vary = vary_names(stored.headers)
        if vary is None:
            # Vary: * - the answer may depend on anything: never stored (RFC 9111 4.1).
            return False
        if mw.validate_response is not None:
            try:
                verdict = mw.validate_response(stored.status, stored.headers, stored.body)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception as exc:
                # The client has its answer already; a failing validator only means
                # "do not store".
                reason = f"validator_error ({type(exc).__name__})"
                _log.warning("semantic cache: not stored %s", self.log_fields(reason))
                return False
            if not verdict:
                return False
        # Stored under the Vary names its own response gave; lookups learn them here.
        mw.learn_vary(self.target, vary)
        key = await self.key_for(vary)
        return mw._store_later(key, encode_record(stored), self.log_fields(), lease)


class _Responder:
    """The app's send(): buffers (or tees) the response, adds our headers, and keeps
    what the store policy needs."""

    def __init__(self, flow: _Flow, outcome: XCache, *, tee: bool) -> None:
        self.flow = flow
        self.outcome = outcome
        self.tee = tee
        self.cap = flow.mw.settings.max_body_bytes
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = False  # the start message went to the client
        self.forwarding = False  # buffering given up: everything goes straight through
        self.complete = False
        self.cacheable = True
        self.tee_buffer: _native.StreamTee | None = None
        self.sse = False
        # (deadline, budget): once the response reaches the client, the upstream
        # budget bounds each pause of the app rather than the whole response, so a
        # long stream that keeps coming is never cut (a stalled one still is).
        self.keep_alive: tuple[asyncio.Timeout, float] | None = None

    async def send(self, message: Message) -> None:
        self._extend()
        await self._handle(message)
        self._extend()

    def _extend(self) -> None:
        if self.started and self.keep_alive is not None:
            deadline, budget = self.keep_alive
            if not deadline.expired():  # past it, the app is being cancelled
                deadline.reschedule(asyncio.get_running_loop().time() + budget)

    async def _handle(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers", []))
            self.start = message
            self.sse = _is_sse(_content_type(headers))
            if self.tee:
                self.tee_buffer = _native.StreamTee(self.cap, sse=self.sse)
                await self._send_start()
            return
        if kind != "http.response.body":
            # Trailers, zero-copy sends, ...: not a response we can replay.
            self.cacheable = False
            await self._go_forwarding()
            await self.flow.send(message)
            return
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more:
            self.complete = True
            self.flow.response_done = True
        if self.tee_buffer is not None:
            self.tee_buffer.push(chunk)
            if not more:
                self.tee_buffer.close()
            await self.flow.send(message)
            return
        if self.forwarding:
            await self.flow.send(message)
            return
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > self.cap:
            # Too big to keep: send what we have and forward the rest as it comes.
            self.cacheable = False
            await self._go_forwarding()
            if not more:
                await self.flow.send(
                    {"type": "http.response.body", "body": b"", "more_body": False}
                )

    async def _send_start(self) -> None:
        if self.start is None or self.started:
            return
        self.started = True
        await self.flow.send(_with_headers(self.start, [(b"x-cache", self.outcome.encode())]))

    async def _go_forwarding(self) -> None:
        if self.forwarding:
            return
        self.forwarding = True
        await self._send_start()
        if self.chunks:
            body = b"".join(self.chunks)
            self.chunks = []
            await self.flow.send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self) -> None:
        """The app returned: send what was buffered."""
        if self.tee_buffer is not None or self.forwarding or self.start is None:
            return
        await self._send_start()
        # An app that returned mid-body leaves the response unfinished here too: the
        # server then aborts it, and the client never takes a cut body for the whole.
        await self.flow.send(
            {
                "type": "http.response.body",
                "body": b"".join(self.chunks),
                "more_body": not self.complete,
            }
        )

    async def timed_out(self) -> None:
        self.cacheable = False
        if self.started:
            # Headers (and maybe part of the body) already went out: leave the response
            # unfinished so that the server aborts it; ending it here would pass a cut
            # body off as the whole answer.
            return
        await self.flow.send(
            {
                "type": "http.response.start",
                "status": 504,
                "headers": [
                    (b"content-type", _JSON_TYPE),
                    (b"content-length", str(len(_TIMEOUT_BODY)).encode()),
                    (b"x-cache", self.outcome.encode()),
                ],
            }
        )
        await self.flow.send(
            {"type": "http.response.body", "body": _TIMEOUT_BODY, "more_body": False}
        )

    def stored_response(self) -> StoredResponse | None:
        """What to store, or ``None`` when the store policy refuses the response."""
        start = self.start
        if start is None or not self.complete or not self.cacheable:
            return None
        status = int(start["status"])
        if not 200 <= status <= 299:
            return None
        headers: list[tuple[bytes, bytes]] = list(start.get("headers", []))
        if _header_values(headers, b"set-cookie"):
            return None
        for value in _header_values(headers, b"content-encoding"):
            # Replays carry the stored bytes as they are: only identity bodies, so a
            # hit can never be a decoded body with an encoding header (or the reverse).
            if any(c.strip().lower() not in (b"", b"identity") for c in value.split(b",")):
                return None
        for value in _header_values(headers, b"cache-control"):
            directives = {d.strip().split(b"=", 1)[0].lower() for d in value.split(b",")}
            if b"no-store" in directives or b"private" in directives:
                return None
        if self.tee_buffer is not None:
            if self.tee_buffer.overflowed:
                return None
            body = self.tee_buffer.getvalue()
            if self.sse and not self.tee_buffer.complete:
                return None
        else:
            body = b"".join(self.chunks)
        if self.sse:
            if self.tee_buffer is None and not _sse_complete(body, self.cap):
                return None
        elif not _is_json_object(body, self.cap):
            return None
        extra = self.flow.mw.credential_headers
        return StoredResponse(status, _replayable_headers(headers, extra), body, self.sse)


def _sse_complete(body: bytes, cap: int) -> bool:
    tee = _native.StreamTee(max(cap, len(body)), sse=True)
    tee.push(body)
    tee.close()
    return tee.complete


def _is_json_object(body: bytes, cap: int) -> bool:
    try:
        _native.scan_request(body, max_bytes=max(cap, len(body), 1))
    except RequestBodyError:
        return False
    return True


def _split_events(body: bytes) -> list[bytes]:
    """The SSE body cut after each blank line (one event per message)."""
    parts = re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", body)
    return [p for p in parts if p] or [b""]


def _age_seconds(hit: CacheHit) -> float:
    return max(0.0, (datetime.now(UTC) - hit.created_at).total_seconds())


def _storable(scope: Scope) -> Scope:
    extensions = dict(scope.get("extensions") or {})
    extensions[STORABLE_EXTENSION] = {}
    return {**scope, "extensions": extensions}


def _with_headers(message: Message, extra: list[tuple[bytes, bytes]]) -> Message:
    names = {n for n, _ in extra}
    headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
    return {**message, "headers": headers + extra}


def _set_header(
    headers: list[tuple[bytes, bytes]], name: bytes, value: bytes
) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in headers if n != name] + [(name, value)]
