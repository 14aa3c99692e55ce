"""Request and response header rules shared by the middleware and the proxy: hop-by-hop
fields, credentials, cookies, ``Cache-Control``, ``Vary`` and the request target that keys
a route."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_CREDENTIAL_HEADERS",
    "HOP_BY_HOP",
    "VARY_ANY",
    "CacheControl",
    "RouteKey",
    "content_type",
    "credential_bytes",
    "credential_entries",
    "header_values",
    "is_sse",
    "parse_cache_control",
    "parse_cookies",
    "request_target",
    "vary_names",
    "vary_route",
    "with_header",
    "with_headers",
]

RouteKey = Literal["target", "path_query", "path"]
"""What of the request's target keys an entry: ``target`` (scheme, host, port, path and
query), ``path_query`` (path and query) or ``path`` (the path alone)."""

# RFC 9110 7.6.1 hop-by-hop fields plus the legacy Proxy-Connection: never forwarded by
# the proxy, never stored by the middleware.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

DEFAULT_CREDENTIAL_HEADERS: Final = (
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"x-api-key",  # Anthropic, many API gateways
    b"api-key",  # Azure OpenAI
)
"""Request headers that identify a caller: a request with one bypasses the cache, or,
with ``SEMANTIC_CACHE_CACHE_AUTHORIZED_REQUESTS``, is keyed by their digest."""

VARY_ANY: Final = "*"

# The stored body is always identity-encoded (the store policy refuses any other), and
# identity is acceptable to every client: Accept-Encoding cannot change what is served.
_VARY_IGNORED: Final = frozenset({"accept-encoding"})
_DEFAULT_PORTS: Final = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_SSE_TYPE: Final = b"text/event-stream"
_MAX_AGE_CAP: Final = 2**31
_MAX_AGE_DIGITS: Final = 11


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The values of header ``name`` (lower-case) in order."""
    return [v for n, v in headers if n.lower() == name]


def content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The first ``Content-Type`` value (empty when there is none)."""
    values = header_values(headers, b"content-type")
    return values[0] if values else b""


def is_sse(content_type: bytes) -> bool:
    """Whether a ``Content-Type`` value is ``text/event-stream`` (any parameters)."""
    return content_type.split(b";", 1)[0].strip().lower() == _SSE_TYPE


def with_headers(message: Mapping[str, Any], extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An ASGI ``http.response.start`` message with ``extra`` set (replacing those names)."""
    names = {n for n, _ in extra}
    headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
    return {**message, "headers": headers + extra}


def with_header(
    headers: list[tuple[bytes, bytes]], name: bytes, value: bytes
) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``name`` (lower-case) set to ``value`` alone."""
    return [(n, v) for n, v in headers if n != name] + [(name, value)]


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The request's ``Cache-Control`` directives the cache obeys."""

    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None


def parse_cache_control(values: Iterable[bytes]) -> CacheControl:
    """The directives of a request's ``Cache-Control`` lines."""
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
    return CacheControl(no_store, no_cache, max_age)


def parse_cookies(values: Iterable[bytes]) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of RFC 6265 ``Cookie`` header values, in order, over every
    ``Cookie`` line; names and values white-space trimmed, a part without ``=`` skipped."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        for part in value.decode("latin-1").split(";"):
            name, eq, val = part.partition("=")
            name = name.strip()
            if eq and name:
                pairs.append((name, val.strip()))
    return pairs


def credential_entries(
    headers: Iterable[tuple[bytes, bytes]],
    names: Collection[bytes],
    cookies: Collection[str] = (),
) -> list[tuple[str, list[str]]]:
    """The credentials a request carries, in canonical order (sorted by name), each with
    its values in request order; empty when it carries none.

    ``names`` are the lower-case credential header names. With ``cookies`` given only
    those cookies count (entries named ``cookie:<name>``) and other cookies are ignored;
    without, any ``Cookie`` header is a credential as a whole.
    """
    request = list(headers)
    found: dict[str, list[str]] = {}
    for name, raw in request:
        lowered = name.lower()
        if lowered not in names or (lowered == b"cookie" and cookies):
            continue
        found.setdefault(lowered.decode("latin-1"), []).append(raw.decode("latin-1"))
    if cookies and b"cookie" in names:
        for cookie, value in parse_cookies(header_values(request, b"cookie")):
            if cookie in cookies:
                found.setdefault(f"cookie:{cookie}", []).append(value)
    return sorted(found.items())


def credential_bytes(entries: list[tuple[str, list[str]]]) -> bytes:
    """An unambiguous encoding of :func:`credential_entries` (the HMAC's input)."""
    return json.dumps(entries, separators=(",", ":")).encode("utf-8")


def vary_names(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, ...] | None:
    """The request headers a response varies on (lower-case, sorted, without those that
    cannot change a stored answer); ``None`` for ``Vary: *`` (never stored)."""
    names: set[str] = set()
    for value in header_values(headers, b"vary"):
        for token in value.decode("latin-1").split(","):
            token = token.strip().lower()
            if token == VARY_ANY:
                return None
            if token:
                names.add(token)
    return tuple(sorted(names - _VARY_IGNORED))


def vary_route(
    target: str,
    names: tuple[str, ...],
    headers: Iterable[tuple[bytes, bytes]],
    digest: Mapping[str, str] | None = None,
) -> str:
    """The route of a response that varies on ``names``: ``target`` plus the request's
    value of each (white space trimmed, several lines joined by ``,``; absent is
    ``null``, apart from empty). ``digest`` maps names whose values are replaced by a
    keyed digest (credentials). Without ``names``, ``target`` itself.

    A JSON array; a target is returned plain only when it does not start with ``[``,
    so no target can spell another's varied route.
    """
    if not names and not target.startswith("["):
        return target
    request = list(headers)
    pairs: list[tuple[str, str | None]] = []
    for name in names:
        values = header_values(request, name.encode("latin-1"))
        value = ",".join(v.decode("latin-1").strip() for v in values) if values else None
        if value is not None and digest is not None and name in digest:
            value = digest[name]
        pairs.append((name, value))
    return json.dumps([target, pairs], separators=(",", ":"))


def _host(scope: Mapping[str, object], scheme: str) -> str:
    headers = scope.get("headers")
    host = b""
    if isinstance(headers, Iterable):
        for name, value in headers:
            if name.lower() == b"host":
                host = value
                break
    text = host.decode("latin-1").strip().lower()
    if not text:
        server = scope.get("server")
        if not isinstance(server, tuple | list) or not server:
            return ""
        name = str(server[0]).lower()
        port = None if len(server) < 2 or server[1] is None else str(server[1])
        if ":" in name:
            name = f"[{name}]"
        text = name if port is None else f"{name}:{port}"
    hostname, colon, port = text.rpartition(":")
    # "[::1]" has colons but no port; "[::1]:80" and "a.example:80" have one.
    if colon and port == _DEFAULT_PORTS.get(scheme) and not hostname.endswith(":"):
        return hostname
    return text


def request_target(scope: Mapping[str, object], route_key: RouteKey = "target") -> str:
    """The part of a request's target that keys its route: see :data:`RouteKey`.

    ``target`` is ``scheme://host[:port]/path?query``: the ``Host`` the client sent
    (else the server address), lower-case, the scheme's default port dropped.
    """
    path = str(scope.get("path", ""))
    if route_key == "path":
        return path
    query = scope.get("query_string")
    if isinstance(query, bytes) and query:
        # The query string can change the answer: part of the exact partition.
        path += "?" + query.decode("latin-1")
    if route_key == "path_query":
        return path
    scheme = str(scope.get("scheme", "http")).lower()
    return f"{scheme}://{_host(scope, scheme)}{path}"
