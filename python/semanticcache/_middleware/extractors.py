"""Scope, query and model extractors for :class:`~semanticcache.SemanticCacheMiddleware`.

An extractor is called as ``extractor(request, body)`` (``request`` a Starlette
:class:`~starlette.requests.Request`, ``body`` the raw request bytes) and returns a string
or ``None``; it may be a plain function or a coroutine function.

Scope decides which tenant's entries a request may be served from, so it must come from
something the client cannot choose: :func:`trusted_extract_scope_from_server_side` reads
what an authentication middleware (running *before* the cache) put on ``request.state``.
:func:`client_extract_scope` reads the client-sent ``X-Semantic-Cache-Scope`` header or the
JSON ``cache_scope`` / ``tenant_id`` members: any client can forge those, so the middleware
only uses it when built with ``trust_client_scope=True``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request

__all__ = [
    "SCOPE_HEADER",
    "Extractor",
    "client_extract_scope",
    "scope_value",
    "trusted_extract_scope_from_server_side",
]

SCOPE_HEADER: Final = "x-semantic-cache-scope"
"""The client-sent scope header (used only with ``trust_client_scope=True``)."""

_SCOPE_FIELDS: Final = ("cache_scope", "tenant_id")

Extractor = Callable[[Request, bytes], "str | Awaitable[str | None] | None"]
"""``(request, body) -> str | None``, sync or async."""


def scope_value(raw: object) -> str | None:
    """A scope from a state attribute or JSON member: a non-blank string (stripped) or an
    integer (as decimal text); ``None`` for anything else (booleans included)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


async def trusted_extract_scope_from_server_side(request: Request) -> str | None:
    """The scope an authentication / tenancy middleware stored on ``request.state``.

    Reads ``request.state.cache_scope``, then ``request.state.tenant_id`` (an integer is
    used as its decimal text). Add the middleware that sets them so that it runs before
    the cache (``app.add_middleware`` it *after* ``SemanticCacheMiddleware``).
    """
    for attr in _SCOPE_FIELDS:
        value = scope_value(getattr(request.state, attr, None))
        if value is not None:
            return value
    return None


def client_extract_scope(request: Request, body: bytes) -> str | None:
    """The client-sent scope: the ``X-Semantic-Cache-Scope`` header, else the JSON
    body's ``cache_scope`` / ``tenant_id``. Forgeable: see the module doc."""
    header = scope_value(request.headers.get(SCOPE_HEADER))
    if header is not None:
        return header
    try:
        parsed: object = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict):
        for name in _SCOPE_FIELDS:
            value = scope_value(parsed.get(name))
            if value is not None:
                return value
    return None
