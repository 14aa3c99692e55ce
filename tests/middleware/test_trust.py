"""What the origin would have answered differently is never served: credentials beyond
``Authorization`` (cookies, API-key headers), ``Vary`` and the Host of the target, through
the middleware in a FastAPI app on a real Postgres + pgvector."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from semanticcache import CacheKey, SemanticCache, SemanticCacheMiddleware
from semanticcache._middleware import StoredResponse, encode_record
from semanticcache._middleware.headers import RouteKey, parse_cookies, request_target, vary_route
from semanticcache._native import scan_request
from tests.middleware.conftest import Calls, chat_body, client_for, completion, serve

URL = "/v1/chat/completions"
PROMPT = "What is the capital of France?"


def trust_app(calls: Calls) -> FastAPI:
    """An app whose answers depend on what the tests vary: the caller's credentials and
    cookies, Accept-Language (sent with Vary), the Host."""
    app = FastAPI()

    @app.post(URL)
    async def chat(request: Request) -> Response:
        await request.body()
        calls.count += 1
        h = request.headers
        who = h.get("x-api-key") or h.get("api-key") or request.cookies.get("session") or "-"
        return JSONResponse(
            completion(f"answer {calls.count} for {who} at {h.get('host')}"),
            # An echo of the caller's key, as some gateways do: never stored or replayed.
            headers={
                "x-api-key": h.get("x-api-key", "none"),
                "api-key": "echo",
                "x-tenant-token": "echo",
                "authorization": "echo",
            },
        )

    @app.post("/vary")
    async def vary(request: Request) -> Response:
        await request.body()
        calls.count += 1
        language = request.headers.get("accept-language", "none")
        names = request.query_params.get("vary", "Accept-Language")
        return JSONResponse(
            completion(f"answer {calls.count} in {language}"),
            headers={"vary": names, "content-language": language},
        )

    return app


async def post(app: Any, path: str = URL, *, model: str, **kwargs: Any) -> Any:
    async with client_for(app) as client:
        return await client.post(path, json=chat_body(model, PROMPT), **kwargs)


def answer(response: Any) -> str:
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def authorized(cache: SemanticCache, **changes: Any) -> Any:
    return dataclasses.replace(cache.settings, cache_authorized_requests=True, **changes)


# --- credentials -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("x-api-key", "sk-ant-alice", "x_api_key"),
        ("api-key", "azure-alice", "api_key"),
        ("cookie", "session=alice", "cookie"),
        ("proxy-authorization", "Basic YWxpY2U6cHc=", "proxy_authorization"),
    ],
)
async def test_credential_headers_bypass_by_default(
    cache: SemanticCache,
    calls: Calls,
    model: str,
    header: str,
    value: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    caplog.set_level(logging.DEBUG, logger="semanticcache.middleware")
    first = await post(mw, model=model, headers={header: value})
    await mw.drain()
    second = await post(mw, model=model, headers={header: value})
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert calls.count == 2
    assert any(r.getMessage().endswith(f"reason={reason}") for r in caplog.records)
    assert value not in caplog.text


async def test_configured_credential_headers_extend_the_defaults(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    settings = dataclasses.replace(cache.settings, credential_headers=("x-tenant-token",))
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, settings=settings)
    mine = await post(mw, model=model, headers={"x-tenant-token": "t1"})
    builtin = await post(mw, model=model, headers={"x-api-key": "k"})
    assert mine.headers["x-cache"] == builtin.headers["x-cache"] == "BYPASS"


@pytest.mark.parametrize(
    ("header", "alice", "bob"),
    [
        ("x-api-key", "sk-ant-alice", "sk-ant-bob"),
        ("api-key", "azure-alice", "azure-bob"),
        ("cookie", "session=alice", "session=bob"),
        ("x-tenant-token", "alice", "bob"),
    ],
)
async def test_authorized_requests_are_keyed_by_every_credential(
    cache: SemanticCache, calls: Calls, model: str, header: str, alice: str, bob: str
) -> None:
    settings = authorized(cache, credential_headers=("x-tenant-token",))
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, settings=settings)
    first = await post(mw, model=model, headers={header: alice})
    assert first.headers["x-cache"] == "MISS"
    await mw.drain()
    # Another caller, and no caller at all, never get alice's answer.
    assert (await post(mw, model=model, headers={header: bob})).headers["x-cache"] == "MISS"
    assert (await post(mw, model=model)).headers["x-cache"] == "MISS"
    # Alice's credential plus another one is another caller too.
    both = {header: alice, "authorization": "Bearer x"}
    assert (await post(mw, model=model, headers=both)).headers["x-cache"] == "MISS"
    await mw.drain()
    again = await post(mw, model=model, headers={header: alice})
    assert again.headers["x-cache"] == "HIT"
    assert again.content == first.content
    assert calls.count == 4


async def test_an_answer_made_for_one_session_cookie_is_never_served_to_another(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, settings=authorized(cache))
    # Several Cookie lines, other cookies around: the whole set is the credential.
    alice = [("cookie", "theme=dark; session=alice"), ("cookie", "lang=fr")]
    first = await post(mw, model=model, headers=alice)
    await mw.drain()
    other = await post(mw, model=model, headers={"cookie": "theme=dark; session=bob"})
    assert other.headers["x-cache"] == "MISS"
    assert answer(other).endswith("for bob at test")
    assert (await post(mw, model=model, headers=alice)).content == first.content


async def test_named_credential_cookies_key_and_other_cookies_are_ignored(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    settings = dataclasses.replace(cache.settings, credential_cookies=("session",))
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, settings=settings)
    # Only analytics cookies: an anonymous request, cached whatever their values.
    assert (await post(mw, model=model, headers={"cookie": "_ga=1"})).headers["x-cache"] == "MISS"
    await mw.drain()
    assert (await post(mw, model=model, headers={"cookie": "_ga=2"})).headers["x-cache"] == "HIT"
    # The session cookie makes it a caller's request: bypass by default.
    named = await post(mw, model=model, headers={"cookie": "_ga=1; session=alice"})
    assert named.headers["x-cache"] == "BYPASS"

    mw = SemanticCacheMiddleware(
        trust_app(calls), cache=cache, settings=authorized(cache, credential_cookies=("session",))
    )
    alice = await post(mw, model=model, headers={"cookie": "session=alice; _ga=1"})
    assert alice.headers["x-cache"] == "MISS"
    await mw.drain()
    bob = await post(mw, model=model, headers={"cookie": "_ga=1; session=bob"})
    assert bob.headers["x-cache"] == "MISS"
    again = await post(mw, model=model, headers=[("cookie", "_ga=9"), ("cookie", "session=alice")])
    assert again.headers["x-cache"] == "HIT"
    assert again.content == alice.content


def test_cookie_header_parsing() -> None:
    assert parse_cookies([b"a=1; b = 2 ;c=x=y", b"d=;noequals; =bare", b"a=3"]) == [
        ("a", "1"),
        ("b", "2"),
        ("c", "x=y"),
        ("d", ""),
        ("a", "3"),
    ]


async def test_hits_never_replay_credential_headers(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    settings = authorized(cache, credential_headers=("X-Tenant-Token",))
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, settings=settings)
    key = {"x-api-key": "sk-secret"}
    first = await post(mw, model=model, headers=key)
    assert first.headers["x-api-key"] == "sk-secret"  # the miss is the app's own answer
    await mw.drain()
    hit = await post(mw, model=model, headers=key)
    assert hit.headers["x-cache"] == "HIT"
    for echoed in ("x-api-key", "api-key", "x-tenant-token", "authorization"):
        assert echoed not in hit.headers


# --- Vary --------------------------------------------------------------------------------


async def test_vary_keys_the_entry_by_the_varied_request_headers(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    fr = {"accept-language": "fr"}
    de = {"accept-language": "de"}
    first_fr = await post(mw, "/vary", model=model, headers=fr)
    await mw.drain()
    first_de = await post(mw, "/vary", model=model, headers=de)
    assert first_de.headers["x-cache"] == "MISS"
    assert answer(first_de).endswith("in de")
    await mw.drain()
    # Both variants are kept, and each is served only to its own language.
    hit_fr = await post(mw, "/vary", model=model, headers={"accept-language": "  fr "})
    hit_de = await post(mw, "/vary", model=model, headers=de)
    assert hit_fr.headers["x-cache"] == hit_de.headers["x-cache"] == "HIT"
    assert hit_fr.content == first_fr.content
    assert hit_de.content == first_de.content
    # The replay keeps the Vary header (downstream caches need it).
    assert hit_fr.headers["vary"] == "Accept-Language"
    # Absent and empty are values of their own.
    none = await post(mw, "/vary", model=model)
    await mw.drain()
    empty = await post(mw, "/vary", model=model, headers={"accept-language": ""})
    assert none.headers["x-cache"] == empty.headers["x-cache"] == "MISS"
    assert calls.count == 4


async def test_a_process_that_has_not_seen_the_vary_never_serves_another_variant(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    writer = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    await post(writer, "/vary", model=model, headers={"accept-language": "fr"})
    await writer.drain()
    # Another worker, sharing the Postgres, knows nothing of the route yet.
    reader = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    de = await post(reader, "/vary", model=model, headers={"accept-language": "de"})
    assert de.headers["x-cache"] == "MISS"
    assert answer(de).endswith("in de")
    fr = await post(reader, "/vary", model=model, headers={"accept-language": "fr"})
    assert fr.headers["x-cache"] == "HIT"
    assert answer(fr).endswith("in fr")


async def test_vary_star_is_never_stored(cache: SemanticCache, calls: Calls, model: str) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    for _ in range(2):
        got = await post(mw, "/vary?vary=*", model=model)
        assert got.headers["x-cache"] == "MISS"
        await mw.drain()
    assert calls.count == 2


async def test_vary_accept_encoding_does_not_split_the_cache(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    # Stored bodies are identity-encoded, which every client accepts.
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    path = "/vary?vary=Accept-Encoding"
    await post(mw, path, model=model, headers={"accept-encoding": "gzip"})
    await mw.drain()
    hit = await post(mw, path, model=model, headers={"accept-encoding": "br, deflate"})
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in hit.headers


# --- Host --------------------------------------------------------------------------------


async def test_two_virtual_hosts_never_share_an_entry(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    async with serve(mw) as base:
        port = base.rsplit(":", 1)[1]
        a = await post_to(base, model, host="a.example")
        await mw.drain()
        b = await post_to(base, model, host="B.example:80")
        assert b.headers["x-cache"] == "MISS"
        assert answer(b).endswith("at B.example:80")
        await mw.drain()
        # Case and the default port do not make another host.
        again = await post_to(base, model, host="A.EXAMPLE:80")
        assert again.headers["x-cache"] == "HIT"
        assert again.content == a.content
        # Another port is another origin.
        other_port = await post_to(base, model, host=f"a.example:{port}")
        assert other_port.headers["x-cache"] == "MISS"


async def post_to(base: str, model: str, *, host: str) -> Any:
    import httpx

    async with httpx.AsyncClient(base_url=base) as client:
        return await client.post(URL, json=chat_body(model, PROMPT), headers={"host": host})


async def test_route_key_path_query_shares_entries_across_hosts(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache, route_key="path_query")
    async with serve(mw) as base:
        await post_to(base, model, host="a.example")
        await mw.drain()
        assert (await post_to(base, model, host="b.example")).headers["x-cache"] == "HIT"


@pytest.mark.parametrize(
    ("scope", "route_key", "target"),
    [
        (
            {"headers": [(b"host", b"Api.Example:443")], "scheme": "https"},
            "target",
            "https://api.example/p?q=1",
        ),
        (
            {"headers": [(b"host", b"api.example:443")], "scheme": "http"},
            "target",
            "http://api.example:443/p?q=1",
        ),
        ({"headers": [(b"host", b"[::1]:80")]}, "target", "http://[::1]/p?q=1"),
        ({"headers": [(b"host", b"[::1]")]}, "target", "http://[::1]/p?q=1"),
        ({"headers": [], "server": ("10.0.0.1", 8080)}, "target", "http://10.0.0.1:8080/p?q=1"),
        ({"headers": [(b"host", b"a")]}, "path_query", "/p?q=1"),
        ({"headers": [(b"host", b"a")]}, "path", "/p"),
    ],
)
def test_request_target(scope: dict[str, Any], route_key: RouteKey, target: str) -> None:
    full = {"type": "http", "path": "/p", "query_string": b"q=1", **scope}
    assert request_target(full, route_key) == target


def test_no_target_spells_a_varied_route() -> None:
    headers = [(b"accept-language", b" fr ")]
    varied = vary_route("/p", ("accept-language",), headers)
    assert varied == '["/p",[["accept-language","fr"]]]'
    # A path made to look like that route is encoded apart from it.
    assert vary_route(varied, (), headers) != varied
    assert vary_route("/p", ("accept-language",), []) == '["/p",[["accept-language",null]]]'
    assert vary_route("/p", ("x",), [(b"x", b" ")]) == '["/p",[["x",""]]]'
    assert vary_route("/p", ("x",), [(b"x", b"a"), (b"x", b" b")]) == '["/p",[["x","a,b"]]]'


async def test_an_entry_of_another_variant_is_never_replayed(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    # An entry written past the middleware under the plain route, though its response
    # varies: a lookup that did not key by Accept-Language must not serve it.
    scan = scan_request(json.dumps(chat_body(model, PROMPT)).encode())
    key = CacheKey.from_scan(scan, route="http://test/vary")
    assert key is not None
    headers = ((b"content-type", b"application/json"), (b"vary", b"Accept-Language"))
    record = StoredResponse(200, headers, json.dumps(completion("in fr")).encode(), False)
    await cache.put(key, encode_record(record))
    mw = SemanticCacheMiddleware(trust_app(calls), cache=cache)
    got = await post(mw, "/vary", model=model, headers={"accept-language": "de"})
    assert got.headers["x-cache"] == "MISS"
    assert answer(got) == "answer 1 in de"
