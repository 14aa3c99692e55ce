"""The admin endpoint: report a hit wrong, delete an entry, purge, behind a bearer token.

Access. ``SEMANTIC_CACHE_ADMIN_TOKEN`` is the operator's token: it may act on any scope.
:func:`admin_scope_token` derives from it the token of one scope (HMAC-SHA256), to hand
to that scope's owner: it acts on that scope only. Every request names the scope it acts
on (``"scope"`` in its JSON body, ``""`` for unscoped entries), whichever token it
carries, and an entry is found only inside that scope: a token of another scope's entry
gets the same 404 as a token that names nothing, so the answer never says whether it
exists. Without a token, or with one that is neither the operator's nor the named
scope's, the answer is a bare 401, whatever the path. Tokens are compared in constant
time.

Routes (under the mount point): ``POST /entries/{token}/report-wrong`` (body ``scope``,
optional ``lookup_text``), ``DELETE /entries/{token}`` (body ``scope``), ``POST /purge``
(body ``scope``, ``route``, ``model``, ``older_than_seconds``, ``expired``, combined
with AND; the operator's token may leave out ``scope`` to purge every scope), ``GET
/near-misses`` (query ``scope``, which only the operator's token may leave out to list
every scope's); the operator's dashboard (:mod:`semanticcache._dashboard`). See
docs/admin.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from semanticcache._cache import SemanticCache
from semanticcache._dashboard import Dashboard, is_dashboard_path
from semanticcache._feedback import delete_negatives
from semanticcache._key import MAX_SCOPE_BYTES, db_text
from semanticcache.errors import ConfigurationError, StorageError

__all__ = ["ADMIN_PATH", "admin_app", "admin_scope_token"]

ADMIN_PATH: Final = "/_semcache/admin"
"""Where the proxy serves the admin endpoint when a token is configured."""

_PERSON: Final = b"semcache:admin-scope:v1\x00"
_MAX_BODY: Final = 64 * 1024
# About 3,000 years: past it Postgres's intervals overflow.
_MAX_AGE: Final = 1e11
# Any token shape: one that names nothing gets the answer of another scope's entry.
_ENTRY: Final = re.compile(r"/entries/([^/]{1,256})(/report-wrong)?")
_NOT_FOUND: Final = {"error": "no such entry in this scope"}

_log = logging.getLogger("semanticcache.admin")


def admin_scope_token(admin_token: bytes | str, scope: str) -> str:
    """The admin token of ``scope`` alone, derived from the operator's ``admin_token``
    (64 hex digits)."""
    key = admin_token.encode("utf-8") if isinstance(admin_token, str) else admin_token
    message = _PERSON + scope.encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def admin_app(cache: SemanticCache, *, token: bytes | str | None = None) -> ASGIApp:
    """The admin endpoint of ``cache``, to mount in a Starlette / FastAPI app:
    ``app.mount("/semcache-admin", semanticcache.admin_app(cache))``.

    ``token`` defaults to the cache's ``admin_token`` setting; without either this
    raises :class:`~semanticcache.errors.ConfigurationError` (the endpoint is off).
    Entry tokens are read under the cache's ``log_digest_key``: set it, so that every
    worker reads every worker's tokens.
    """
    if not isinstance(cache, SemanticCache):
        raise ConfigurationError("cache must be a SemanticCache")
    if token is None:
        token = cache.settings.admin_token
    if token is None or not token:
        raise ConfigurationError(
            "the admin endpoint needs a token: set SEMANTIC_CACHE_ADMIN_TOKEN or pass token="
        )
    key = token.encode("utf-8") if isinstance(token, str) else token
    return _AdminApp(cache, key)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _AdminApp:
    def __init__(self, cache: SemanticCache, token: bytes) -> None:
        self._cache = cache
        self._token = token
        self._dashboard = Dashboard(cache, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = _path(scope)
        if is_dashboard_path(path):
            # Operator-only routes with their own access rule (a browser's cookie).
            await self._dashboard(scope, receive, send, path)
            return
        request = Request(scope, receive)
        if path == "/near-misses":
            await (await self._near_misses(request))(scope, receive, send)
            return
        body = await _read(request)
        fields = _json_object(body)
        named = fields.get("scope") if fields is not None else None
        if not self._allowed(request, named if isinstance(named, str) else None):
            await _unauthorized()(scope, receive, send)
            return
        try:
            response = await self._route(request, path, fields)
        except _Refused as exc:
            response = JSONResponse({"error": str(exc)}, status_code=exc.status)
        except StorageError as exc:
            _log.warning("admin request failed: %s", exc)
            response = JSONResponse({"error": "the cache's Postgres is unavailable"}, 503)
        await response(scope, receive, send)

    def _allowed(self, request: Request, named: str | None) -> bool:
        presented = _bearer(request)
        if presented is None:
            return False
        operator = hmac.compare_digest(presented, self._token)
        own = named is not None and hmac.compare_digest(
            presented, admin_scope_token(self._token, named).encode("ascii")
        )
        # Both compared every time: the answer's timing says nothing about which failed.
        return operator | own

    async def _near_misses(self, request: Request) -> Response:
        # A GET: the scope is a query parameter, not a body field.
        named = request.query_params.get("scope")
        if not self._allowed(request, named):
            return _unauthorized()
        if request.method != "GET":
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        try:
            scope = _scope_field({"scope": named})
        except _Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return await self._dashboard.near_misses_response(scope)

    async def _route(self, request: Request, path: str, fields: dict[str, Any] | None) -> Response:
        if fields is None:
            raise _Refused(400, "the body must be a JSON object")
        match = _ENTRY.fullmatch(path)
        if match is not None:
            report = match.group(2) is not None
            if request.method != ("POST" if report else "DELETE"):
                raise _Refused(405, "method not allowed")
            scope = _scope_field(fields)
            if scope is None:
                raise _Refused(400, '"scope" is required (a string; "" for unscoped entries)')
            entry_id = self._cache.entry_id(match.group(1).lower())
            if report:
                text = fields.get("lookup_text")
                if text is not None and not isinstance(text, str):
                    raise _Refused(400, '"lookup_text" must be a string')
                done = entry_id is not None and await self._cache.report_wrong_id(
                    entry_id, scope=scope, lookup_text=text
                )
                return JSONResponse({"reported": True}) if done else _not_found()
            done = entry_id is not None and await self._cache.delete(entry_id, scope=scope)
            return JSONResponse({"deleted": True}) if done else _not_found()
        if path == "/purge":
            if request.method != "POST":
                raise _Refused(405, "method not allowed")
            return await self._purge(fields, _scope_field(fields))
        raise _Refused(404, "not found")

    async def _purge(self, fields: dict[str, Any], scope: str | None) -> Response:
        unknown = set(fields) - {"scope", "route", "model", "older_than_seconds", "expired"}
        if unknown:
            raise _Refused(400, f"unknown fields: {', '.join(sorted(unknown))}")
        older = fields.get("older_than_seconds")
        if older is not None and (
            isinstance(older, bool)
            or not isinstance(older, int | float)
            or not 0 <= older <= _MAX_AGE
        ):
            raise _Refused(400, f'"older_than_seconds" must be a number in 0..{_MAX_AGE:g}')
        expired = fields.get("expired", False)
        if not isinstance(expired, bool):
            raise _Refused(400, '"expired" must be true or false')
        route = _name_field(fields, "route")
        model = _name_field(fields, "model")
        if scope is None and route is None and model is None and older is None and not expired:
            raise _Refused(
                400,
                'say what to purge: "scope", "route", "model", "older_than_seconds" or "expired"',
            )
        count = await self._cache.purge(
            scope=scope,
            route=route,
            model=model,
            older_than=float(older) if older is not None else None,
            expired=expired,
        )
        negatives = 0
        if scope is not None and (route, model, older) == (None, None, None) and not expired:
            # A scope's entries gone: nothing of it stays, its negatives included.
            table = self._cache.table
            negatives = await self._cache.run_on_store(
                lambda conn: delete_negatives(conn, table, scope)
            )
        return JSONResponse({"deleted": count, "negatives_deleted": negatives})


def _name_field(fields: dict[str, Any], name: str) -> str | None:
    """``route`` or ``model`` of a purge: absent, or a non-empty string Postgres can hold
    as it is (one with NUL would select another value's rows)."""
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or db_text(value) != value:
        raise _Refused(400, f'"{name}" must be a non-empty string')
    return value


def _path(scope: Scope) -> str:
    # Under a Mount the app's own path is what follows the mount's root_path.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


async def _read(request: Request) -> bytes | None:
    """The body, or ``None`` past the limit (refused unread beyond it)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    if body is None:
        return None
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _scope_field(fields: dict[str, Any]) -> str | None:
    scope = fields.get("scope")
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise _Refused(400, '"scope" must be a string')
    if len(scope.encode("utf-8", "surrogatepass")) > MAX_SCOPE_BYTES:
        raise _Refused(400, f'"scope" is longer than {MAX_SCOPE_BYTES} bytes')
    if db_text(scope) != scope:
        # Stored as another string (NUL, lone surrogates): a scope's token must not
        # reach the scope that string shares its column value with.
        raise _Refused(400, '"scope" holds NUL or unpaired surrogates')
    return scope


def _bearer(request: Request) -> bytes | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    kind, _, credential = value.partition(" ")
    if kind.lower() != "bearer" or not credential.strip():
        return None
    # Header values arrive decoded as Latin-1: this gives the bytes sent back.
    return credential.strip().encode("latin-1")


def _unauthorized() -> Response:
    return Response(status_code=401, headers={"www-authenticate": "Bearer"})


def _not_found() -> Response:
    return JSONResponse(_NOT_FOUND, status_code=404)
