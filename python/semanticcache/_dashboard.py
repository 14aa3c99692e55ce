"""The admin dashboard: one server-rendered page under the admin endpoint.

Routes (under the admin mount): ``GET /dashboard`` (the page), ``GET /dashboard/panel``
(its figures as an HTML fragment, which the page's inline script fetches every few
seconds), ``GET /dashboard/data`` (the same figures as JSON) and ``POST
/dashboard/login`` (a form with the operator's token; sets the session cookie). Only the
operator's token opens them, never a scope's: the page shows every scope. The admin
endpoint's ``GET /near-misses`` (which a scope's token may read, for its scope) answers
with :meth:`Dashboard.near_misses_response`.

A browser signs in once through the login form: the answer sets an HttpOnly,
SameSite=Strict cookie, scoped to the dashboard's path, that holds an expiry and an HMAC
of it under the admin token (never the token itself). The cookie opens the dashboard's
read-only routes and nothing else; the admin endpoint's other routes still need the
bearer token. Every page is ``no-store`` with a strict Content-Security-Policy: no
source but the page's own, its one script and style allowed by a per-response nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs

from psycopg import AsyncConnection, sql
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from semanticcache import _native
from semanticcache._activity import SLOT_SECONDS, NearMiss, Slot
from semanticcache._cache import SemanticCache
from semanticcache._entry_token import entry_token
from semanticcache._storage import near_misses
from semanticcache._storage.records import SIMILARITY_BUCKETS
from semanticcache.errors import StorageError

__all__ = ["COOKIE", "Dashboard", "is_dashboard_path"]

COOKIE: Final = "semcache_admin"
SESSION_SECONDS: Final = 12 * 3600
REFRESH_SECONDS: Final = 5
BUSIEST: Final = 10
NEAR_MISSES_LISTED: Final = 100
"""Near misses the dashboard and ``GET /near-misses`` list (the most recent)."""
_PERSON: Final = b"semcache:admin-session:v1\x00"
_MAX_FORM: Final = 4096
# The dashboard's Postgres reads (a scan of the table's hit counts) run at most this
# often per process, whatever the number of open pages.
_MIN_READ_INTERVAL: Final = float(REFRESH_SECONDS)
# The histograms start here: thresholds are set above it.
_LOW_BUCKET: Final = 50
_MISSES: Final = ("miss", "rejected", "disagreement", "unverified")

_log = logging.getLogger("semanticcache.admin")


def is_dashboard_path(path: str) -> bool:
    return path == "/dashboard" or path.startswith("/dashboard/")


class Dashboard:
    """The dashboard's routes for ``cache``, opened by the operator's ``token``."""

    def __init__(self, cache: SemanticCache, token: bytes) -> None:
        self._cache = cache
        self._token = token
        self._data: dict[str, Any] | None = None
        self._read_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        request = Request(scope, receive)
        root = scope.get("root_path", "")
        response = await self._route(request, path.rstrip("/") or "/", root)
        await response(scope, receive, send)

    async def _route(self, request: Request, path: str, root: str) -> Response:
        method = request.method
        if path == "/dashboard/login":
            if method != "POST":
                return _plain(405, "method not allowed")
            return await self._login(request, root)
        if not (self._bearer_ok(request) or self._session_ok(request)):
            if path == "/dashboard" and method == "GET":
                return _login_page(root, wrong=False)
            return Response(status_code=401, headers={"www-authenticate": "Bearer"})
        if method != "GET":
            return _plain(405, "method not allowed")
        if path == "/dashboard":
            return _page(root, self._cache.table, _panel(await self.data()))
        if path == "/dashboard/panel":
            return _secure(HTMLResponse(_panel(await self.data())), nonce=None)
        if path == "/dashboard/data":
            return _json(await self.data())
        return _plain(404, "not found")

    def _bearer_ok(self, request: Request) -> bool:
        value = request.headers.get("authorization", "")
        kind, _, credential = value.partition(" ")
        if kind.lower() != "bearer" or not credential.strip():
            return False
        return hmac.compare_digest(credential.strip().encode("latin-1"), self._token)

    def _session_value(self, expires: int) -> str:
        mac = hmac.new(self._token, _PERSON + str(expires).encode(), hashlib.sha256)
        return f"{expires}.{mac.hexdigest()}"

    def _session_ok(self, request: Request) -> bool:
        value = request.cookies.get(COOKIE)
        if not value:
            return False
        expires, _, _ = value.partition(".")
        if not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
            return False
        expected = self._session_value(int(expires))
        return hmac.compare_digest(value.encode("latin-1", "replace"), expected.encode())

    async def _login(self, request: Request, root: str) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM:
                return _plain(413, "too large")
        try:
            form = parse_qs(body.decode("ascii"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            form = {}
        # Percent-escapes decode as UTF-8, as the setting's value is encoded.
        given = form.get("token", [""])[0].strip().encode("utf-8", "surrogatepass")
        if not given or not hmac.compare_digest(given, self._token):
            return _login_page(root, wrong=True)
        expires = int(time.time()) + SESSION_SECONDS
        response = RedirectResponse(f"{root}/dashboard", status_code=303)
        response.set_cookie(
            COOKIE,
            self._session_value(expires),
            max_age=SESSION_SECONDS,
            path=f"{root}/dashboard",
            httponly=True,
            samesite="strict",
            secure=_needs_secure(request),
        )
        return _secure(response, nonce=None)

    def _breakers(self) -> dict[str, str]:
        states: dict[str, str] = dict(self._cache.breaker_states())
        # Those of dependencies this cache does not use say nothing.
        if self._cache.settings.redis_uri is None:
            states.pop("redis", None)
        if self._cache.verifier is None:
            states.pop("verifier", None)
        return states

    async def near_misses(self, scope: str | None) -> tuple[list[NearMiss], str]:
        """The most recent near misses of every process (of ``scope`` alone, when given)
        and ``"postgres"``; when Postgres cannot be read, this process's own and
        ``"process"``."""
        cache = self._cache
        table = cache.table
        try:
            await cache.open()
            await cache.flush_hits()  # this process's pending ones included
            found = await cache.run_on_store(
                lambda conn: near_misses.read(conn, table, scope=scope, limit=NEAR_MISSES_LISTED)
            )
        except StorageError as exc:
            _log.warning("near misses: Postgres read failed: %s", exc)
            return cache.activity.near_misses(scope)[:NEAR_MISSES_LISTED], "process"
        return found, "postgres"

    async def near_misses_response(self, scope: str | None) -> Response:
        """``GET /near-misses``: the answer of :meth:`near_misses` as JSON."""
        found, source = await self.near_misses(scope)
        return _json({"near_misses": self._near_json(found), "source": source})

    def _near_json(self, found: list[NearMiss]) -> list[dict[str, Any]]:
        key = self._cache.settings.effective_log_digest_key
        return [_near_json(key, n) for n in found]

    async def data(self) -> dict[str, Any]:
        """The dashboard's figures (Postgres is read at most every few seconds)."""
        now = time.monotonic()
        if self._data is None or now - self._read_at >= _MIN_READ_INTERVAL:
            self._data = await self._stored()
            self._read_at = now
        cache = self._cache
        activity = cache.activity
        slots = activity.timeline()
        lookups = activity.lookups
        hits = activity.hits
        verifier = cache.verifier
        return {
            "table": cache.table,
            "process": {
                "since": _iso(activity.started),
                "lookups": lookups,
                "hits": hits,
                "hit_rate": hits / lookups if lookups else None,
                # Every hit served is one upstream call not made.
                "upstream_calls_saved": hits,
            },
            "timeline": {
                "slot_seconds": SLOT_SECONDS,
                "slots": [
                    {"start": _iso(s.start), "lookups": s.lookups, "hits": s.hits} for s in slots
                ],
            },
            "threshold": cache.threshold,
            "gate": verifier.floor if verifier is not None else cache.threshold,
            "breakers": self._breakers(),
            **self._data,
        }

    async def _stored(self) -> dict[str, Any]:
        """What Postgres holds: every process's counts, the busiest entries and near
        misses (this process's own near misses when Postgres cannot be read)."""
        cache = self._cache
        key = cache.settings.effective_log_digest_key
        try:
            await cache.open()
            stats = await cache.stats()
            rows = await cache.run_on_store(lambda conn: _busiest(conn, cache.table))
            near = await cache.run_on_store(
                lambda conn: near_misses.read(
                    conn, cache.table, scope=None, limit=NEAR_MISSES_LISTED
                )
            )
        except StorageError as exc:
            _log.warning("dashboard: Postgres read failed: %s", exc)
            return {
                "postgres": "unavailable",
                "similarity": None,
                "stored": None,
                "busiest": [],
                "near_misses": self._near_json(cache.activity.near_misses()),
                "near_misses_source": "process",
            }
        counts = stats.nearest_similarity
        zeros = (0,) * SIMILARITY_BUCKETS
        misses = [sum(c) for c in zip(*(counts.get(o, zeros) for o in _MISSES), strict=True)]
        return {
            "postgres": "ok",
            "stored": {"rows": stats.rows, "hits": stats.hits, "table_bytes": stats.table_bytes},
            "similarity": {
                "buckets": SIMILARITY_BUCKETS,
                "hits": list(counts.get("hit", (0,) * SIMILARITY_BUCKETS)),
                "misses": misses,
            },
            "busiest": [
                {
                    "entry": entry_token(key, cache.table, entry_id),
                    "scope_digest": _digest(key, scope) if scope else "-",
                    "route": route,
                    "model": model,
                    "hits": hits,
                    "created_at": created.isoformat(timespec="seconds"),
                }
                for entry_id, scope, route, model, hits, created in rows
            ],
            "near_misses": self._near_json(near),
            "near_misses_source": "postgres",
        }


async def _busiest(
    conn: AsyncConnection[Any], table: str
) -> list[tuple[int, str, str, str | None, int, datetime]]:
    query = sql.SQL(
        "SELECT id, scope, route, model, hit_count, created_at FROM {t} WHERE hit_count > 0 "
        "ORDER BY hit_count DESC, id LIMIT {n}"
    ).format(t=sql.Identifier(table), n=sql.Literal(BUSIEST))
    cur = await conn.execute(query)
    return [(int(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), r[5]) for r in await cur.fetchall()]


def _digest(key: bytes, value: str) -> str:
    # The middleware's log digest of a scope, so a row matches its log lines.
    return _native.hmac_sha256_hex(key, value.encode("utf-8", "surrogatepass"), 16)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _needs_secure(request: Request) -> bool:
    """``Secure`` unless a loopback address is reached over plain HTTP (a local test):
    past a TLS-terminating proxy the scheme reads ``http``, and the browser is on TLS."""
    if request.url.scheme == "https":
        return True
    host = request.url.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


def _near_json(key: bytes, near: NearMiss) -> dict[str, Any]:
    return {
        "at": _iso(near.at),
        "scope_digest": _digest(key, near.scope) if near.scope else "-",
        "text_digest": near.text_digest,
        "entry": near.entry,
        "similarity": round(near.similarity, 4),
        "reason": near.reason,
    }


# --- responses ------------------------------------------------------------------------


def _csp(nonce: str | None) -> str:
    own = f"'nonce-{nonce}'" if nonce is not None else "'none'"
    return (
        f"default-src 'none'; script-src {own}; style-src {own}; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _secure(response: Response, *, nonce: str | None) -> Response:
    headers = response.headers
    headers["cache-control"] = "no-store"
    headers["content-security-policy"] = _csp(nonce)
    headers["x-content-type-options"] = "nosniff"
    headers["referrer-policy"] = "no-referrer"
    headers["x-frame-options"] = "DENY"
    return response


def _plain(status: int, message: str) -> Response:
    return _secure(Response(message, status_code=status, media_type="text/plain"), nonce=None)


def _json(data: Mapping[str, Any]) -> Response:
    return _secure(JSONResponse(data), nonce=None)


_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px}
header h1{font-size:18px;margin:0;display:inline}
header span{color:#aab;margin-left:12px}
main{padding:12px 20px;display:grid;gap:14px;
  grid-template-columns:repeat(auto-fit,minmax(460px,1fr))}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:0 0 8px;color:#445}
.figures{display:flex;flex-wrap:wrap;gap:22px}
.figure b{display:block;font-size:24px}
.figure small{color:#667}
table{border-collapse:collapse;width:100%;font-size:12px}
td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eef;white-space:nowrap}
code{font-size:11px}
.closed{color:#1a7f37}.open{color:#cf222e;font-weight:bold}.half_open{color:#9a6700}
.empty{color:#889}
form{margin:40px auto;max-width:360px;background:#fff;padding:20px;border:1px solid #dde}
input{width:100%;padding:6px;margin:8px 0;box-sizing:border-box}
.wrong{color:#cf222e}
"""

_SCRIPT: Final = """
(function () {
  var panel = document.getElementById("panel");
  var stamp = document.getElementById("updated");
  async function refresh() {
    try {
      var got = await fetch(panel.dataset.src, {credentials: "same-origin", cache: "no-store"});
      if (got.status === 401) { location.reload(); return; }
      if (got.ok) {
        panel.innerHTML = await got.text();
        stamp.textContent = new Date().toLocaleTimeString();
      }
    } catch (e) { /* the next tick tries again */ }
  }
  setInterval(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))


def _document(nonce: str, title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style nonce={nonce}>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _login_page(root: str, *, wrong: bool) -> Response:
    nonce = secrets.token_urlsafe(16)
    note = '<p class="wrong">That token does not open the dashboard.</p>' if wrong else ""
    body = (
        '<form method="post" action="'
        + html.escape(f"{root}/dashboard/login")
        + '"><h2>semcache dashboard</h2>'
        + note
        + '<label>Admin token<input type="password" name="token" autocomplete="off" '
        'autofocus required></label><button type="submit">Sign in</button></form>'
    )
    page = _document(nonce, "semcache dashboard: sign in", body)
    return _secure(
        HTMLResponse(page, status_code=401, headers={"www-authenticate": "Bearer"}), nonce=nonce
    )


def _page(root: str, table: str, panel: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    src = html.escape(f"{root}/dashboard/panel")
    body = (
        f"<header><h1>semcache</h1><span>{html.escape(table)}</span>"
        f'<span>updated <span id="updated">{datetime.now(UTC):%H:%M:%S} UTC</span></span>'
        f'</header><main id="panel" data-src="{src}">{panel}</main>'
        f"<script nonce={nonce}>{_SCRIPT}</script>"
    )
    return _secure(HTMLResponse(_document(nonce, "semcache dashboard", body)), nonce=nonce)


# --- the panel ------------------------------------------------------------------------


def _figure(ident: str, value: str, label: str) -> str:
    return (
        f'<div class="figure"><b id="{ident}">{html.escape(value)}</b><small>{label}</small></div>'
    )


def _panel(data: Mapping[str, Any]) -> str:
    process = data["process"]
    rate = process["hit_rate"]
    stored = data["stored"]
    figures = [
        _figure("lookups", str(process["lookups"]), "lookups"),
        _figure("hits", str(process["hits"]), "hits"),
        _figure("hit-rate", "-" if rate is None else f"{rate:.0%}", "hit rate"),
        _figure("saved", str(process["upstream_calls_saved"]), "upstream calls saved"),
        _figure("near-count", str(len(data["near_misses"])), "recent near misses"),
    ]
    if stored is not None:
        figures.append(_figure("rows", str(stored["rows"]), "entries stored"))
        figures.append(_figure("stored-hits", str(stored["hits"]), "hits, all processes"))
    else:
        figures.append(_figure("rows", "?", "Postgres unavailable"))
    parts = [
        '<section class="wide"><h2>This process since '
        + html.escape(_short(process["since"]))
        + ' UTC</h2><div class="figures">'
        + "".join(figures)
        + "</div></section>",
        "<section><h2>Lookups and hits, last 10 minutes (10 s slots)</h2>"
        + _timeline_svg([Slot(0, s["lookups"], s["hits"]) for s in data["timeline"]["slots"]])
        + "</section>",
        "<section><h2>Nearest similarity of searched lookups (all processes; "
        "exact hits skip the search)</h2>" + _histograms(data) + "</section>",
        "<section><h2>Busiest entries</h2>" + _busiest_table(data["busiest"]) + "</section>",
        "<section><h2>Circuit breakers (this process)</h2>"
        + _breakers_table(data["breakers"])
        + "</section>",
        '<section class="wide"><h2>Most recent near misses ('
        + ("all processes" if data["near_misses_source"] == "postgres" else "this process")
        + ")</h2>"
        + _near_table(data["near_misses"])
        + "</section>",
    ]
    return "".join(parts)


def _timeline_svg(slots: list[Slot]) -> str:
    width, height, top = 600, 130, 14
    peak = max((s.lookups for s in slots), default=0) or 1
    step = width / max(len(slots), 1)
    bars = []
    for index, slot in enumerate(slots):
        x = index * step
        for count, colour in ((slot.lookups, "#c9ced8"), (slot.hits, "#2da44e")):
            if count:
                h = (height - top - 16) * count / peak
                bars.append(
                    f'<rect x="{x + 1:.1f}" y="{height - 16 - h:.1f}" width="{step - 2:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
    # The hit rate of each slot that had lookups, on its own 0..100% scale.
    rate = " ".join(
        f"{(index + 0.5) * step:.1f},{height - 16 - (height - top - 16) * s.hits / s.lookups:.1f}"
        for index, s in enumerate(slots)
        if s.lookups
    )
    line = (
        f'<polyline id="hit-rate-line" points="{rate}" fill="none" stroke="#0969da" '
        'stroke-width="1.5"/>'
        if rate
        else ""
    )
    return (
        f'<svg id="timeline" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="lookups and hits over time">'
        + "".join(bars)
        + line
        + f'<line x1="0" x2="{width}" y1="{height - 16}" y2="{height - 16}" stroke="#889"/>'
        f'<text x="0" y="{height - 2}" font-size="10" fill="#667">-10 min</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" fill="#667" '
        'text-anchor="end">now</text>'
        f'<text x="0" y="10" font-size="10" fill="#667">peak {peak} lookups / slot; '
        "grey: lookups, green: hits (upstream calls saved), blue: hit rate (0 to 100%)"
        "</text></svg>"
    )


def _histograms(data: Mapping[str, Any]) -> str:
    similarity = data["similarity"]
    if similarity is None:
        return '<p class="empty">Postgres unavailable.</p>'
    threshold = float(data["threshold"])
    gate = float(data["gate"])
    return _histogram_svg(
        "semantic hits", similarity["hits"], "#2da44e", threshold, gate
    ) + _histogram_svg("misses", similarity["misses"], "#d4762c", threshold, gate)


def _histogram_svg(name: str, counts: list[int], colour: str, threshold: float, gate: float) -> str:
    width, height, top, bottom = 600, 110, 14, 16
    shown = counts[_LOW_BUCKET:]
    below = sum(counts[:_LOW_BUCKET])
    peak = max(shown, default=0) or 1
    step = width / len(shown)
    bars = []
    for index, count in enumerate(shown):
        if count:
            h = (height - top - bottom) * count / peak
            bars.append(
                f'<rect x="{index * step + 0.5:.1f}" y="{height - bottom - h:.1f}" '
                f'width="{step - 1:.1f}" height="{h:.1f}" fill="{colour}"/>'
            )

    def x_of(similarity: float) -> float:
        low = _LOW_BUCKET / SIMILARITY_BUCKETS
        return max(0.0, min(1.0, (similarity - low) / (1 - low))) * width

    marks = [
        f'<line x1="{x_of(threshold):.1f}" x2="{x_of(threshold):.1f}" y1="{top}" '
        f'y2="{height - bottom}" stroke="#cf222e" stroke-dasharray="4 3"/>'
        f'<text x="{x_of(threshold) - 3:.1f}" y="{top + 10}" font-size="10" fill="#cf222e" '
        f'text-anchor="end">threshold {threshold:.2f}</text>'
    ]
    if abs(gate - threshold) > 1e-9:
        marks.append(
            f'<line x1="{x_of(gate):.1f}" x2="{x_of(gate):.1f}" y1="{top}" y2="{height - bottom}" '
            f'stroke="#8250df" stroke-dasharray="2 3"/>'
        )
    ticks = "".join(
        f'<text x="{x_of(v):.1f}" y="{height - 3}" font-size="10" fill="#667" '
        f'text-anchor="{"start" if v == 0.5 else "middle"}">{v:.1f}</text>'
        for v in (0.5, 0.6, 0.7, 0.8, 0.9)
    )
    total = sum(counts)
    return (
        f'<svg id="hist-{name.split()[-1]}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="nearest similarity of {name}">'
        + "".join(bars)
        + "".join(marks)
        + ticks
        + f'<text x="{width}" y="{height - 3}" font-size="10" fill="#667" '
        'text-anchor="end">1.0</text>'
        f'<text x="0" y="10" font-size="10" fill="#667">{name}: {total} lookups'
        f"{f', {below} below 0.5' if below else ''}</text></svg>"
    )


def _short(iso: str) -> str:
    """``2026-01-02T03:04:05+00:00`` as ``2026-01-02 03:04:05`` (the page says UTC)."""
    return iso[:19].replace("T", " ")


def _table(head: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{html.escape(empty)}</p>'
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{heads}</tr>{body}</table>"


def _busiest_table(busiest: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"<code>{html.escape(b['entry'])}</code>",
            f"<code>{html.escape(b['scope_digest'])}</code>",
            _clipped(b["route"] or "-"),
            _clipped(b["model"] if b["model"] is not None else "-"),
            str(int(b["hits"])),
            html.escape(_short(b["created_at"])),
        ]
        for b in busiest
    ]
    return _table(
        ["entry", "scope (digest)", "route", "model", "hits", "stored (UTC)"],
        rows,
        "No entry has a hit yet.",
    )


def _clipped(value: str, width: int = 60) -> str:
    """``value`` escaped, cut to ``width`` characters (whole in its tooltip): a route can
    be a long URL, and the table's cells do not wrap."""
    shown = value if len(value) <= width else value[: width - 1] + "\u2026"
    return f'<span title="{html.escape(value)}">{html.escape(shown)}</span>'


def _breakers_table(breakers: Mapping[str, str]) -> str:
    rows = [
        [html.escape(name), f'<span class="{html.escape(state)}">{html.escape(state)}</span>']
        for name, state in sorted(breakers.items())
    ]
    return _table(["dependency", "state"], rows, "No breaker.")


def _near_table(near: list[dict[str, Any]]) -> str:
    rows = [
        [
            html.escape(_short(n["at"])),
            f"<code>{html.escape(n['scope_digest'])}</code>",
            f"<code>{html.escape(n['text_digest'])}</code>",
            f"<code>{html.escape(n['entry'] or '-')}</code>",
            f"{float(n['similarity']):.3f}",
            html.escape(n["reason"]),
        ]
        for n in near[:25]
    ]
    return _table(
        [
            "when (UTC)",
            "scope (digest)",
            "lookup (digest)",
            "nearest entry",
            "similarity",
            "reason",
        ],
        rows,
        "No near miss yet.",
    )
