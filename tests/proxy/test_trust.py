"""Through the proxy, against a real upstream, an answer is never served to a request the
upstream would have answered differently: API-key headers (Anthropic ``x-api-key``,
Azure ``api-key``), ``Vary`` and the Host the client asked for."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web

from semanticcache import SemanticCache, create_semantic_cache_proxy_app
from tests.proxy.conftest import chat_body, completion, serve

ANTHROPIC = "/v1/messages"
AZURE = "/openai/deployments/gpt/chat/completions"
KEYS = {"key-alice": "alice", "key-bob": "bob"}
PROMPT = "What is the capital of France?"


class TrustUpstream:
    """An upstream that authenticates by API-key header and answers per language and
    per forwarded host."""

    def __init__(self) -> None:
        self.url = ""
        self.calls: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls[request.path] += 1
        n = self.calls[request.path]
        if request.path in (ANTHROPIC, AZURE):
            header = "x-api-key" if request.path == ANTHROPIC else "api-key"
            user = KEYS.get(request.headers.get(header, ""))
            if user is None:
                return web.json_response({"error": {"type": "authentication_error"}}, status=401)
            return web.json_response(completion(f"answer {n} for {user}", body["model"]))
        if request.path == "/vary":
            language = request.headers.get("accept-language", "none")
            return web.json_response(
                completion(f"answer {n} in {language}", body["model"]),
                headers={"Vary": "Accept-Language"},
            )
        if request.path == "/gzip":
            payload = json.dumps(completion(f"answer {n}", body["model"])).encode()
            return web.Response(
                body=gzip.compress(payload),
                headers={
                    "Content-Encoding": "gzip",
                    "Content-Type": "application/json",
                    "Vary": "Accept-Encoding",
                },
            )
        host = request.headers.get("x-forwarded-host", "none")
        return web.json_response(completion(f"answer {n} for {host}", body["model"]))


@asynccontextmanager
async def run_upstream() -> AsyncIterator[TrustUpstream]:
    upstream = TrustUpstream()
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield upstream
    finally:
        await runner.cleanup()


@pytest.fixture
async def origin() -> AsyncIterator[TrustUpstream]:
    async with run_upstream() as up:
        yield up


@asynccontextmanager
async def proxied(
    origin: TrustUpstream, cache: SemanticCache, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_semantic_cache_proxy_app(
        origin.url, cache, settings=dataclasses.replace(cache.settings, **settings)
    )
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield http, app.state.semantic_cache_middleware


def content(response: httpx.Response) -> str:
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


@pytest.mark.parametrize(("path", "header"), [(ANTHROPIC, "x-api-key"), (AZURE, "api-key")])
async def test_an_api_key_answer_is_never_replayed_to_another_key_or_to_none(
    origin: TrustUpstream, cache: SemanticCache, model: str, path: str, header: str
) -> None:
    body = chat_body(model, PROMPT)
    async with proxied(origin, cache, cache_authorized_requests=True) as (http, mw):
        alice = await http.post(path, json=body, headers={header: "key-alice"})
        assert (alice.status_code, alice.headers["x-cache"]) == (200, "MISS")
        await mw.drain()
        wrong = await http.post(path, json=body, headers={header: "key-mallory"})
        none = await http.post(path, json=body)
        bob = await http.post(path, json=body, headers={header: "key-bob"})
        again = await http.post(path, json=body, headers={header: "key-alice"})
    # The upstream refuses what it would refuse; bob gets his own answer.
    assert (wrong.status_code, wrong.headers["x-cache"]) == (401, "MISS")
    assert (none.status_code, none.headers["x-cache"]) == (401, "MISS")
    assert content(bob) == "answer 4 for bob"
    assert again.headers["x-cache"] == "HIT"
    assert again.content == alice.content
    assert origin.calls[path] == 4


async def test_api_key_requests_pass_by_uncached_by_default(
    origin: TrustUpstream, cache: SemanticCache, model: str
) -> None:
    body = chat_body(model, PROMPT)
    async with proxied(origin, cache) as (http, mw):
        for _ in range(2):
            got = await http.post(ANTHROPIC, json=body, headers={"x-api-key": "key-alice"})
            assert (got.status_code, got.headers["x-cache"]) == (200, "BYPASS")
            await mw.drain()
    assert origin.calls[ANTHROPIC] == 2


async def test_vary_accept_language_through_the_proxy(
    origin: TrustUpstream, cache: SemanticCache, model: str
) -> None:
    body = chat_body(model, PROMPT)
    async with proxied(origin, cache) as (http, mw):
        fr = await http.post("/vary", json=body, headers={"accept-language": "fr"})
        await mw.drain()
        de = await http.post("/vary", json=body, headers={"accept-language": "de"})
        await mw.drain()
        hit_fr = await http.post("/vary", json=body, headers={"accept-language": "fr"})
        hit_de = await http.post("/vary", json=body, headers={"accept-language": "de"})
    assert (fr.headers["x-cache"], content(fr)) == ("MISS", "answer 1 in fr")
    assert de.headers["x-cache"] == "MISS"
    assert content(de) == "answer 2 in de"
    assert (hit_fr.headers["x-cache"], content(hit_fr)) == ("HIT", "answer 1 in fr")
    assert (hit_de.headers["x-cache"], content(hit_de)) == ("HIT", "answer 2 in de")
    assert hit_de.headers["vary"] == "Accept-Language"


async def test_vary_accept_encoding_still_hits_through_the_proxy(
    origin: TrustUpstream, cache: SemanticCache, model: str
) -> None:
    body = chat_body(model, PROMPT)
    async with proxied(origin, cache) as (http, mw):
        first = await http.post("/gzip", json=body, headers={"accept-encoding": "gzip"})
        await mw.drain()
        hit = await http.post("/gzip", json=body, headers={"accept-encoding": "br"})
    # Decoded where it may be stored; identity suits every client, whatever it accepts.
    assert first.headers["x-cache"] == "MISS"
    assert "content-encoding" not in first.headers
    assert hit.headers["x-cache"] == "HIT"
    assert "content-encoding" not in hit.headers
    assert hit.headers["vary"] == "Accept-Encoding"
    assert hit.json() == first.json()


async def test_the_host_the_client_asked_for_keys_the_entry(
    origin: TrustUpstream, cache: SemanticCache, model: str
) -> None:
    body = chat_body(model, PROMPT)
    async with proxied(origin, cache) as (http, mw):
        a = await http.post("/chat", json=body, headers={"host": "a.example"})
        await mw.drain()
        b = await http.post("/chat", json=body, headers={"host": "b.example"})
        await mw.drain()
        again = await http.post("/chat", json=body, headers={"host": "a.example"})
    assert content(a) == "answer 1 for a.example"
    assert (b.headers["x-cache"], content(b)) == ("MISS", "answer 2 for b.example")
    assert (again.headers["x-cache"], content(again)) == ("HIT", "answer 1 for a.example")
