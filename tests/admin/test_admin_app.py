"""The admin endpoint in a FastAPI app (one mount) and in the proxy: the bearer token,
the scope rule (another scope's entry is answered as a missing one), report, delete and
purge."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from semanticcache import (
    CacheKey,
    CacheSettings,
    ConfigurationError,
    HashingEmbedder,
    SemanticCache,
    admin_app,
    admin_scope_token,
    create_semantic_cache_proxy_app,
)
from semanticcache._entry_token import entry_token

KEY = secrets.token_bytes(32)
ADMIN = "operator-" + secrets.token_hex(16)
QUESTION = "What is the capital of France?"


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    settings = CacheSettings(
        pg_uri=pg_uri, threshold=0.9, log_digest_key=KEY, admin_token=ADMIN.encode()
    )
    async with SemanticCache(settings=settings, embedder=HashingEmbedder(64)) as c:
        yield c


@pytest.fixture
async def client(cache: SemanticCache) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.mount("/admin", admin_app(cache))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _entry(cache: SemanticCache, scope: str, text: str = QUESTION) -> tuple[CacheKey, str]:
    key = CacheKey(text, scope=scope, model=f"m-{secrets.token_hex(3)}")
    entry_id = await cache.put(key, b"answer", raise_errors=True)
    assert entry_id is not None
    return key, entry_token(KEY, cache.table, entry_id)


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _report(
    client: httpx.AsyncClient, token: str, body: dict[str, Any], auth: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/admin/entries/{token}/report-wrong", json=body, headers=auth)


async def _delete(
    client: httpx.AsyncClient, token: str, body: dict[str, Any], auth: dict[str, str]
) -> httpx.Response:
    return await client.request("DELETE", f"/admin/entries/{token}", json=body, headers=auth)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer "},
        {"authorization": "Basic " + ADMIN},
        {"authorization": "Bearer " + ADMIN[:-1]},
        {"authorization": "Bearer " + ADMIN + "x"},
        {"authorization": "Bearer " + admin_scope_token(ADMIN, "tenant-b")},
        {"authorization": "Bearer " + admin_scope_token("another-operator-token", "tenant-a")},
    ],
)
async def test_without_the_right_token_every_request_is_a_bare_401(
    cache: SemanticCache, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    key, token = await _entry(cache, "tenant-a")
    for response in (
        await _report(client, token, {"scope": "tenant-a"}, headers),
        await _delete(client, token, {"scope": "tenant-a"}, headers),
        await client.post("/admin/purge", json={"scope": "tenant-a"}, headers=headers),
        await client.get("/admin/no-such-path", headers=headers),
        await client.post("/admin/purge", content=b"not json", headers=headers),
    ):
        assert response.status_code == 401
        assert response.content == b""
        assert response.headers["www-authenticate"] == "Bearer"
    hit = await cache.get(key)
    assert hit is not None  # nothing was done


async def test_another_scopes_entry_is_answered_as_a_missing_one(
    cache: SemanticCache, client: httpx.AsyncClient
) -> None:
    key, token = await _entry(cache, "tenant-a")
    missing = entry_token(KEY, cache.table, 2**50)
    b_token = _auth(admin_scope_token(ADMIN, "tenant-b"))
    answers = [
        # tenant-b's own token, naming its own scope: the entry is not there.
        await _report(client, token, {"scope": "tenant-b"}, b_token),
        await _delete(client, token, {"scope": "tenant-b"}, b_token),
        await _report(client, missing, {"scope": "tenant-b"}, b_token),
        await _delete(client, missing, {"scope": "tenant-b"}, b_token),
        # The operator must name the scope too; the wrong one finds nothing.
        await _report(client, token, {"scope": "tenant-b"}, _auth(ADMIN)),
        await _delete(client, token, {"scope": ""}, _auth(ADMIN)),
        # Not a token at all.
        await _report(client, "not-a-token", {"scope": "tenant-b"}, b_token),
        await _delete(client, "0" * 32, {"scope": "tenant-b"}, b_token),
        # A token made under another key (another deployment) names nothing.
        await _report(
            client, entry_token(b"k" * 32, cache.table, 1), {"scope": "tenant-a"}, _auth(ADMIN)
        ),
    ]
    for response in answers:
        assert response.status_code == 404
        assert response.json() == {"error": "no such entry in this scope"}
    assert len({(r.status_code, r.content, tuple(sorted(r.headers.items()))) for r in answers}) == 1
    hit = await cache.get(key)
    assert hit is not None
    # The operator without a scope is asked for one.
    no_scope = await _report(client, token, {}, _auth(ADMIN))
    assert no_scope.status_code == 400
    assert await cache.get(key) is not None


async def test_a_scope_token_reports_and_deletes_in_its_scope(
    cache: SemanticCache, client: httpx.AsyncClient
) -> None:
    own = _auth(admin_scope_token(ADMIN, "tenant-a"))
    key, token = await _entry(cache, "tenant-a")
    reported = await _report(client, token, {"scope": "tenant-a", "lookup_text": "x"}, own)
    assert (reported.status_code, reported.json()) == (200, {"reported": True})
    assert await cache.get(key) is None
    again = await _report(client, token, {"scope": "tenant-a"}, own)
    assert again.status_code == 404

    key, token = await _entry(cache, "tenant-a", "How many moons does Jupiter have?")
    deleted = await _delete(client, token, {"scope": "tenant-a"}, own)
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": True})
    assert await cache.get(key) is None
    # Unscoped entries are the scope "".
    key, token = await _entry(cache, "", "Explain chess in one sentence")
    deleted = await _delete(client, token, {"scope": ""}, _auth(admin_scope_token(ADMIN, "")))
    assert deleted.status_code == 200
    assert await cache.get(key) is None


async def test_purge_by_scope_and_age(cache: SemanticCache, client: httpx.AsyncClient) -> None:
    scope = f"tenant-{secrets.token_hex(3)}"
    keys = [(await _entry(cache, scope, f"question number {i}"))[0] for i in range(3)]
    other, _ = await _entry(cache, "someone-else", "question number 0")
    own = _auth(admin_scope_token(ADMIN, scope))
    young = await client.post(
        "/admin/purge", json={"scope": scope, "older_than_seconds": 3600}, headers=own
    )
    assert young.json() == {"deleted": 0, "negatives_deleted": 0}
    refused = await client.post("/admin/purge", json={"older_than_seconds": 0}, headers=own)
    assert refused.status_code == 401  # a scope's token names its scope
    bad = await client.post("/admin/purge", json={"scope": scope, "table": "x"}, headers=own)
    assert (bad.status_code, bad.json()) == (400, {"error": "unknown fields: table"})
    done = await client.post("/admin/purge", json={"scope": scope}, headers=own)
    assert (done.status_code, done.json()["deleted"]) == (200, 3)
    for key in keys:
        assert await cache.get(key) is None
    assert await cache.get(other) is not None
    nothing = await client.post("/admin/purge", json={}, headers=_auth(ADMIN))
    assert nothing.status_code == 400
    for body in (
        {"older_than_seconds": -1},
        {"older_than_seconds": 1e300},
        {"older_than_seconds": True},
        {"scope": "a\u0000b"},  # stored as another scope's column value: refused
        {"scope": 7},
    ):
        refused = await client.post("/admin/purge", json=body, headers=_auth(ADMIN))
        assert refused.status_code == 400, body
    assert await cache.get(other) is not None


async def test_purge_by_route_and_model(cache: SemanticCache, client: httpx.AsyncClient) -> None:
    scope, tag = f"tenant-{secrets.token_hex(3)}", secrets.token_hex(3)
    route, model = f"/a/{tag}", f"m-{tag}"
    keys = {
        name: CacheKey(QUESTION, scope=s, route=r, model=m)
        for name, s, r, m in [
            ("target", scope, route, model),
            ("other_route", scope, f"/b/{tag}", model),
            ("other_model", scope, route, f"n-{tag}"),
            ("other_scope", "someone-else", route, model),
        ]
    }
    for key in keys.values():
        assert await cache.put(key, b"answer", raise_errors=True) is not None
    own = _auth(admin_scope_token(ADMIN, scope))
    # A scope's token purges inside its scope only: without "scope" it is refused.
    refused = await client.post("/admin/purge", json={"route": route}, headers=own)
    assert refused.status_code == 401
    for body in (
        {"scope": scope, "route": ""},
        {"scope": scope, "model": ""},
        {"scope": scope, "route": 7},
        {"scope": scope, "model": None, "route": ["/a"]},
        {"scope": scope, "route": "/a\u0000"},
    ):
        bad = await client.post("/admin/purge", json=body, headers=own)
        assert bad.status_code == 400, body
        assert "must be a non-empty string" in bad.json()["error"]
    done = await client.post(
        "/admin/purge", json={"scope": scope, "route": route, "model": model}, headers=own
    )
    assert (done.status_code, done.json()) == (200, {"deleted": 1, "negatives_deleted": 0})
    assert await cache.get(keys["target"]) is None
    for name in ("other_route", "other_model", "other_scope"):
        assert await cache.get(keys[name]) is not None, name
    # The operator's token may purge a route in every scope.
    done = await client.post("/admin/purge", json={"route": route}, headers=_auth(ADMIN))
    assert done.json()["deleted"] == 2  # other_model and other_scope
    assert await cache.get(keys["other_scope"]) is None
    done = await client.post("/admin/purge", json={"model": model}, headers=_auth(ADMIN))
    assert done.json()["deleted"] == 1
    assert await cache.get(keys["other_route"]) is None


async def test_the_proxy_serves_it_only_with_a_token(cache: SemanticCache, pg_uri: str) -> None:
    _key, token = await _entry(cache, "tenant-a")
    app = create_semantic_cache_proxy_app("http://127.0.0.1:9", cache)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        path = f"/_semcache/admin/entries/{token}/report-wrong"
        refused = await client.post(path, json={"scope": "tenant-a"})
        assert refused.status_code == 401
        done = await client.post(path, json={"scope": "tenant-a"}, headers=_auth(ADMIN))
        assert done.status_code == 200

    plain = CacheSettings(pg_uri=pg_uri, log_digest_key=KEY)
    without = SemanticCache(settings=plain, embedder=HashingEmbedder(64))
    with pytest.raises(ConfigurationError, match="SEMANTIC_CACHE_ADMIN_TOKEN"):
        admin_app(without)
    off = create_semantic_cache_proxy_app("http://127.0.0.1:9", without)
    assert not any(getattr(r, "path", "").startswith("/_semcache") for r in off.router.routes)
