"""The admin dashboard through the ASGI app: the refusals (no token, a scope's token, a
forged or expired cookie), the login form's cookie, the page's headers, and the figures
after known lookups (hits, near misses as digests, busiest entries, histograms,
breakers)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from semanticcache import (
    CacheKey,
    CacheSettings,
    SemanticCache,
    _native,
    admin_app,
    admin_scope_token,
    create_semantic_cache_proxy_app,
)
from semanticcache._activity import NEAR_MISSES, SLOT_SECONDS, Activity, NearMiss
from semanticcache._dashboard import COOKIE
from semanticcache._entry_token import entry_token
from semanticcache._results import CacheHit, CacheLookup
from tests.admin.questions import Questions

KEY = secrets.token_bytes(32)
ADMIN = "operator-" + secrets.token_hex(16)


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    settings = CacheSettings(
        pg_uri=pg_uri,
        threshold=0.9,
        agreement_check=False,
        log_digest_key=KEY,
        admin_token=ADMIN.encode(),
    )
    async with SemanticCache(settings=settings, embedder=Questions()) as c:
        yield c


@pytest.fixture
async def client(cache: SemanticCache) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.mount("/admin", admin_app(cache))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _sign_in(client: httpx.AsyncClient, token: str = ADMIN) -> httpx.Response:
    return await client.post("/admin/dashboard/login", data={"token": token})


async def test_without_the_token_every_route_is_refused_without_data(
    client: httpx.AsyncClient, cache: SemanticCache
) -> None:
    page = await client.get("/admin/dashboard")
    assert page.status_code == 401
    # A sign-in form, nothing of the cache.
    assert 'name="token"' in page.text
    assert cache.table not in page.text
    assert 'id="lookups"' not in page.text
    assert page.headers["cache-control"] == "no-store"
    for path in ("/admin/dashboard/data", "/admin/dashboard/panel", "/admin/near-misses"):
        for headers in ({}, _bearer(ADMIN[:-1]), _bearer(admin_scope_token(ADMIN, ""))):
            got = await client.get(path, headers=headers)
            assert got.status_code == 401, (path, headers)
            assert got.content == b""
    # A scope's token opens no dashboard route, even naming its scope.
    scoped = admin_scope_token(ADMIN, "tenant")
    got = await client.request(
        "GET", "/admin/dashboard/data", headers=_bearer(scoped), json={"scope": "tenant"}
    )
    assert got.status_code == 401


async def test_the_login_form_sets_a_strict_cookie_that_opens_only_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    wrong = await _sign_in(client, ADMIN + "x")
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert (await _sign_in(client, admin_scope_token(ADMIN, ""))).status_code == 401

    signed = await _sign_in(client)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/admin/dashboard"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/admin/dashboard" in cookie
    assert ADMIN not in cookie  # an HMAC of its expiry, not the token
    assert "Secure" in cookie

    page = await client.get("/admin/dashboard")  # the client keeps the cookie
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert f"<script nonce={nonce.group(1)}>" in page.text
    assert (await client.get("/admin/dashboard/data")).status_code == 200
    # The cookie is not the bearer token: the admin endpoint's other routes refuse it.
    purge = await client.post("/admin/purge", json={"scope": "", "expired": True})
    assert purge.status_code == 401


@pytest.mark.parametrize(
    ("base", "secure"),
    [("http://127.0.0.1:8080", False), ("http://localhost", False), ("http://admin.test", True)],
)
async def test_the_cookie_is_secure_unless_on_loopback(
    cache: SemanticCache, base: str, secure: bool
) -> None:
    """Past a TLS-terminating proxy the scheme reads http: only a loopback address
    goes without ``Secure``."""
    app = FastAPI()
    app.mount("/admin", admin_app(cache))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as c:
        signed = await _sign_in(c)
    assert signed.status_code == 303
    assert ("Secure" in signed.headers["set-cookie"]) is secure


async def test_a_forged_or_expired_cookie_is_refused(client: httpx.AsyncClient) -> None:
    signed = await _sign_in(client)
    value = signed.cookies[COOKIE]
    expires, _, mac = value.partition(".")
    client.cookies.clear()
    later = str(int(expires) + 3600)
    past = str(int(time.time()) - 10)
    forgeries = (f"{later}.{mac}", f"{expires}.{'0' * len(mac)}", f"{past}.{mac}", ADMIN, "")
    assert (
        await client.get("/admin/dashboard/data", headers={"cookie": f"{COOKIE}={value}"})
    ).status_code == 200
    for forged in forgeries:
        got = await client.get("/admin/dashboard/data", headers={"cookie": f"{COOKIE}={forged}"})
        assert got.status_code == 401, forged


async def test_the_figures_after_known_lookups(
    client: httpx.AsyncClient, cache: SemanticCache
) -> None:
    partition = secrets.token_bytes(32)
    entry_id = await cache.put("stored question", b"answer", partition=partition)
    assert entry_id is not None
    for _ in range(3):
        assert (await cache.lookup("stored question", partition=partition)).reason == "hit"
    close = await cache.lookup("close question", partition=partition)  # 0.955: a hit
    assert close.hit is not None
    assert close.hit.match == "semantic"
    near = await cache.lookup("near question", partition=partition)  # 0.855: a near miss
    far = await cache.lookup("far question", partition=partition)  # 0.405: a plain miss
    assert (near.reason, far.reason) == ("miss", "miss")

    got = await client.get("/admin/dashboard/data", headers=_bearer(ADMIN))
    assert got.status_code == 200
    assert got.headers["cache-control"] == "no-store"
    data = got.json()
    assert data["process"]["lookups"] == 6
    assert data["process"]["hits"] == 4
    assert data["process"]["upstream_calls_saved"] == 4
    assert data["process"]["hit_rate"] == pytest.approx(4 / 6)
    assert sum(s["lookups"] for s in data["timeline"]["slots"]) == 6
    assert sum(s["hits"] for s in data["timeline"]["slots"]) == 4
    assert data["timeline"]["slot_seconds"] == SLOT_SECONDS

    token = entry_token(KEY, cache.table, entry_id)
    (near_miss,) = data["near_misses"]
    assert near_miss["entry"] == token
    assert near_miss["reason"] == "miss"
    assert near_miss["similarity"] == pytest.approx(0.855, abs=1e-3)
    digest = _native.hmac_sha256_hex(KEY, b"near question", 16)
    assert near_miss["text_digest"] == digest
    assert near_miss["scope_digest"] == "-"  # unscoped
    assert data["near_misses_source"] == "postgres"
    assert "question" not in got.text  # no lookup text anywhere

    assert data["busiest"][0]["entry"] == token
    assert data["busiest"][0]["hits"] == 4
    similarity = data["similarity"]
    assert similarity["hits"][95] == 1
    assert sum(similarity["hits"]) == 1
    assert similarity["misses"][85] == 1
    assert similarity["misses"][40] == 1
    assert sum(similarity["misses"]) == 2
    assert data["threshold"] == 0.9
    assert data["breakers"]["postgres"] == "closed"
    assert data["breakers"]["embedder"] == "closed"
    assert data["postgres"] == "ok"

    listed = await client.get("/admin/near-misses", headers=_bearer(ADMIN))
    assert listed.status_code == 200
    assert listed.json() == {"near_misses": data["near_misses"], "source": "postgres"}

    panel = await client.get("/admin/dashboard/panel", headers=_bearer(ADMIN))
    assert panel.status_code == 200
    assert '<b id="hits">4</b>' in panel.text
    assert '<b id="lookups">6</b>' in panel.text
    assert token in panel.text
    assert digest in panel.text
    assert "threshold 0.90" in panel.text
    assert "question" not in panel.text


async def test_the_busiest_entries_show_their_route_and_model(
    client: httpx.AsyncClient, cache: SemanticCache
) -> None:
    route = "https://api.example/v1/chat/completions?" + "x" * 80
    key = CacheKey("stored question", scope="tenant", route=route, model="gpt-x")
    entry_id = await cache.put(key, b"answer")
    assert entry_id is not None
    assert (await cache.lookup(key)).hit is not None
    data = (await client.get("/admin/dashboard/data", headers=_bearer(ADMIN))).json()
    (busiest,) = data["busiest"]
    assert busiest["entry"] == entry_token(KEY, cache.table, entry_id)
    assert (busiest["route"], busiest["model"]) == (route, "gpt-x")
    panel = (await client.get("/admin/dashboard/panel", headers=_bearer(ADMIN))).text
    assert "<th>route</th><th>model</th>" in panel
    assert ">gpt-x</span>" in panel
    # A long route is cut in its cell, whole in its tooltip.
    assert f'title="{route}"' in panel
    assert f">{route[:59]}\u2026</span>" in panel


def _missed(reason: str, similarity: float, candidate: int = 7) -> CacheLookup:
    return CacheLookup(
        None,
        reason,  # type: ignore[arg-type]
        best_similarity=similarity if reason != "miss" else None,
        nearest_similarity=similarity,
        candidate_id=candidate,
    )


def test_near_misses_are_stage_two_refusals_and_misses_close_below_the_gate() -> None:
    clock = [1000.0]
    sent: list[NearMiss] = []
    activity = Activity(KEY, "t", lambda: 0.9, clock=lambda: clock[0], on_near_miss=sent.append)
    activity.record("a", _missed("rejected", 0.97), scope="tenant")
    activity.record("b", _missed("miss", 0.81))
    activity.record("c", _missed("miss", 0.79))  # more than 0.1 below the gate
    activity.record("d", _missed("embed_timeout", 0.0))
    hit = CacheHit(b"", 0.95, "semantic", 3, None)  # type: ignore[arg-type]
    activity.record("e", CacheLookup(hit, "hit", best_similarity=0.95, nearest_similarity=0.95))
    kept = activity.near_misses()
    assert [(n.reason, n.similarity) for n in kept] == [("miss", 0.81), ("rejected", 0.97)]
    assert kept[1].entry == entry_token(KEY, "t", 7)
    assert (kept[1].scope, kept[0].scope) == ("tenant", "")
    assert sent == kept[::-1]  # each one handed on, to be written to Postgres
    assert activity.near_misses("tenant") == [kept[1]]
    assert (activity.lookups, activity.hits) == (5, 1)

    for i in range(NEAR_MISSES + 5):
        activity.record(f"x{i}", _missed("disagreement", 0.93))
    assert len(activity.near_misses()) == NEAR_MISSES  # bounded

    clock[0] += SLOT_SECONDS * 3
    activity.record("f", _missed("miss", 0.2))
    slots = activity.timeline()
    assert slots[-1].lookups == 1
    assert slots[-2].lookups == 0
    assert slots[-4].lookups == 5 + NEAR_MISSES + 5
    assert slots[-4].hits == 1
    clock[0] += SLOT_SECONDS * 100  # every slot out of the window
    assert sum(s.lookups for s in activity.timeline()) == 0


async def test_the_proxy_serves_the_dashboard_under_its_admin_path(cache: SemanticCache) -> None:
    app = create_semantic_cache_proxy_app("http://127.0.0.1:9", cache)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://proxy.test") as client:
        assert (await client.get("/_semcache/admin/dashboard/data")).status_code == 401
        signed = await client.post("/_semcache/admin/dashboard/login", data={"token": ADMIN})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/_semcache/admin/dashboard"
        assert "Path=/_semcache/admin/dashboard" in signed.headers["set-cookie"]
        page = await client.get("/_semcache/admin/dashboard")
        assert page.status_code == 200
        assert 'data-src="/_semcache/admin/dashboard/panel"' in page.text
        assert (await client.get("/_semcache/admin/dashboard/panel")).status_code == 200
        listed = await client.get("/_semcache/admin/near-misses", headers=_bearer(ADMIN))
        assert listed.json() == {"near_misses": [], "source": "postgres"}


async def test_a_stage_two_refusal_is_kept_with_its_candidate(pg_uri: str) -> None:
    settings = CacheSettings(
        pg_uri=pg_uri, threshold=0.9, agreement_check=False, log_digest_key=KEY
    )
    async with SemanticCache(
        settings=settings, embedder=Questions(), rejection_threshold=0.99
    ) as cache:
        partition = secrets.token_bytes(32)
        entry_id = await cache.put("stored question", b"answer", partition=partition)
        assert entry_id is not None
        refused = await cache.lookup("close question", partition=partition)
        assert refused.reason == "rejected"
        assert refused.candidate_id == entry_id
        (near,) = cache.activity.near_misses()
    assert near.reason == "rejected"
    assert near.entry == entry_token(KEY, cache.table, entry_id)
    assert near.similarity == pytest.approx(0.955, abs=1e-3)
    assert near.text_digest == _native.hmac_sha256_hex(KEY, b"close question", 16)


async def test_a_token_beyond_ascii_signs_in(pg_uri: str) -> None:
    token = "opérateur-" + secrets.token_hex(8)
    settings = CacheSettings(pg_uri=pg_uri, admin_token=token.encode("utf-8"))
    async with SemanticCache(settings=settings, embedder=Questions()) as cache:
        app = FastAPI()
        app.mount("/admin", admin_app(cache))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
            assert (await _sign_in(client, token)).status_code == 303
            assert (await _sign_in(client, token.replace("é", "e"))).status_code == 401
