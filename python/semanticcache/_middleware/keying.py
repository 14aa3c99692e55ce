"""A request's cache key: its gate (credentials, ``Cache-Control``), scope, lookup text
and route, and the route's ``Vary`` values."""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.types import Scope

from semanticcache import _native
from semanticcache._key import MAX_SCOPE_BYTES, CacheKey
from semanticcache._middleware.extractors import Extractor, client_extract_scope
from semanticcache._middleware.headers import (
    CacheControl,
    credential_bytes,
    credential_entries,
    header_values,
    parse_cache_control,
    request_target,
    vary_route,
)
from semanticcache._offload import OFF_LOOP_CHARS, off_loop_if_long
from semanticcache.errors import RequestBodyError

if TYPE_CHECKING:
    from semanticcache._middleware.asgi import SemanticCacheMiddleware

__all__ = ["Bypass", "RequestKey", "call_extractor", "log_digest"]

_DIGEST_HEX: Final = 16


class Bypass(Exception):
    """The request goes to the app untouched by the cache; ``reason`` is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def log_digest(key: bytes, value: str) -> str:
    """A short keyed digest of ``value`` for the logs (never the text itself)."""
    return _native.hmac_sha256_hex(key, value.encode("utf-8", "surrogatepass"), _DIGEST_HEX)


async def call_extractor(extractor: Extractor, request: Request, body: bytes) -> str | None:
    """The extractor's answer; a failing extractor makes the request a bypass (fail
    open: the app still answers), logged by exception type only (messages may quote
    the body)."""
    try:
        result = extractor(request, body)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise Bypass(f"extractor_error ({type(exc).__name__})") from None
    if result is not None and not isinstance(result, str):
        raise Bypass(f"extractor_error (returned {type(result).__name__})")
    return result


class RequestKey:
    """One request's key: :meth:`gate` before the body is read, :meth:`build` on the
    body, then :meth:`for_vary` for each set of ``Vary`` names a response may give."""

    def __init__(self, mw: SemanticCacheMiddleware, scope: Scope) -> None:
        self.mw = mw
        self.headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        self.target = request_target(scope, mw.route_key)
        self.credentials = credential_entries(
            self.headers, mw.credential_headers, mw.credential_cookies
        )
        # The key without the Vary values of its route, set by build().
        self.base: CacheKey | None = None
        # The Vary names of the last key made: a hit must have been stored with them.
        self.vary: tuple[str, ...] = ()
        # What the log digests are made of, digested only when a line is logged.
        self._scope = ""
        self._query: str | None = None
        self._digests: tuple[str, str] | None = None

    @property
    def scope_digest(self) -> str:
        """The keyed digest of the partition scope for the logs (``-`` when empty)."""
        return self._log_digests()[0]

    @property
    def text_digest(self) -> str:
        """The keyed digest of the lookup text for the logs (``-`` before it is known)."""
        return self._log_digests()[1]

    def _log_digests(self) -> tuple[str, str]:
        if self._digests is None:
            key = self.mw.settings.effective_log_digest_key
            scope = log_digest(key, self._scope) if self._scope else "-"
            text = "-" if self._query is None else log_digest(key, self._query)
            self._digests = (scope, text)
        return self._digests

    def gate(self) -> CacheControl:
        """The request's ``Cache-Control``; :class:`Bypass` when the cache must stay out."""
        if self.credentials and not self.mw.settings.cache_authorized_requests:
            # Named after the first kind present ("authorization", "cookie", "x_api_key").
            raise Bypass(self.credentials[0][0].split(":", 1)[0].replace("-", "_"))
        control = parse_cache_control(header_values(self.headers, b"cache-control"))
        if control.no_store and control.no_cache:
            # Neither served nor stored: nothing to do for the cache.
            raise Bypass("cache_control")
        return control

    async def build(self, body: bytes, request: Request) -> tuple[CacheKey, bool]:
        """The key under the Vary names known for this route, and whether the client
        asked for a stream."""
        mw = self.mw
        settings = mw.settings
        try:
            scan = await off_loop_if_long(
                len(body), lambda: _native.scan_request(body, max_bytes=settings.max_body_bytes)
            )
        except RequestBodyError as exc:
            raise Bypass(f"body_{exc.kind}") from None
        scope = await self._partition_scope(request, body)
        self._scope = scope
        self._digests = None
        text = scan.query
        if mw.extract_query is not None:
            text = await call_extractor(mw.extract_query, request, body)
        model = scan.model
        if mw.extract_model is not None:
            model = await call_extractor(mw.extract_model, request, body)
        if text is None:
            raise Bypass("no_query")
        query: str = text
        extracted = mw.extract_query is not None or mw.extract_model is not None
        self._query = query

        def make_key() -> CacheKey:
            # Normalising and hashing a long text: off the loop past OFF_LOOP_CHARS
            # (with its log digest, which a log line would otherwise make on the loop).
            if len(query) > OFF_LOOP_CHARS:
                self._log_digests()
            if not extracted:
                key = CacheKey.from_scan(scan, scope=scope, route=self.target)
                assert key is not None, "text is the scan's query"
                return key
            return CacheKey(
                text=query,
                scope=scope,
                route=self.target,
                model=model,
                params_digest=scan.params_digest,
                context_digest=scan.context_digest,
            )

        self.base = await off_loop_if_long(len(query), make_key)
        return await self.for_vary(mw.vary_for(self.target)), scan.stream is True

    async def _partition_scope(self, request: Request, body: bytes) -> str:
        mw = self.mw
        tenant = ""
        if mw.extract_scope is not None:
            tenant = await call_extractor(mw.extract_scope, request, body) or ""
        elif mw.trust_client_scope:
            tenant = client_extract_scope(request, body) or ""
        if "\x00" in tenant:
            raise Bypass("bad_scope")
        if mw.settings.require_cache_scope and not tenant:
            raise Bypass("no_scope")
        scope = tenant
        if self.credentials:
            # A keyed digest of every credential (names and values) joins the scope, so
            # two callers, or a caller and an anonymous request, never share an entry.
            # NUL cannot occur in a tenant scope, so this cannot be forged.
            scope = f"\x00auth:{self._credential_digest(self.credentials)}\x00{tenant}"
        if len(scope.encode("utf-8", "surrogatepass")) > MAX_SCOPE_BYTES:
            raise Bypass("scope_too_long")
        return scope

    async def for_vary(self, vary: tuple[str, ...]) -> CacheKey:
        """This request's key for a response that varies on ``vary``: the target plus
        the request's values of those headers make the route, so only a request with
        the same values shares the entry."""
        base = self.base
        assert base is not None, "for_vary before build"
        self.vary = vary
        digests = {
            name: self._credential_digest([(name, [v.decode("latin-1") for v in values])])
            for name in vary
            if name.encode("latin-1") in self.mw.credential_headers
            and (values := header_values(self.headers, name.encode("latin-1")))
        }
        route = vary_route(self.target, vary, self.headers, digests)
        if route == base.route:
            # No Vary values to add (the usual case): the key build() made, digests and all.
            return base
        # replace() computes the key's digests again: off the loop for a long text.
        return await off_loop_if_long(
            len(base.text), lambda: dataclasses.replace(base, route=route)
        )

    def _credential_digest(self, entries: list[tuple[str, list[str]]]) -> str:
        return _native.hmac_sha256_hex(self.mw.credential_key, credential_bytes(entries))
