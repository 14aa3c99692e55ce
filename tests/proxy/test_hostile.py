"""Hostile request bodies through the reverse proxy under a real uvicorn, to a real
upstream: malformed JSON, invalid UTF-8, deep nesting, huge strings, lying
``Content-Length``, slow bodies.

The upstream's ``/upload`` answers with the SHA-256 and size of the body it received,
so each test checks that the upstream saw exactly the bytes the client sent. Whatever
arrives, the proxy answers with the upstream's answer (no 5xx of its own), nothing
hangs, and nothing is stored for a body the scan refuses."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semanticcache import (
    SemanticCache,
    SemanticCacheMiddleware,
    create_semantic_cache_proxy_app,
)
from semanticcache._settings import CacheSettings
from tests.hostile import CAP, HOSTILE, cache_controls, header_values, malformed, refused
from tests.proxy.conftest import Upstream, chat_body, serve
from tests.rawhttp import RawResponse, chunked, request_head, send_raw

UPLOAD = "/upload"


@dataclass
class Served:
    url: str
    upstream: Upstream
    mw: SemanticCacheMiddleware
    cache: SemanticCache

    async def rows(self) -> int:
        await self.mw.drain()
        return (await self.cache.stats()).rows

    async def post(self, body: bytes, *, framing: str = "length") -> RawResponse:
        length = len(body) if framing == "length" else None
        parts = [body] if framing == "length" else chunked([body])
        started = time.monotonic()
        response = await send_raw(self.url, [request_head(UPLOAD, content_length=length), *parts])
        assert response is not None
        assert time.monotonic() - started < 20
        return response


@pytest.fixture
async def served(upstream: Upstream, cache: SemanticCache) -> AsyncIterator[Served]:
    app = create_semantic_cache_proxy_app(
        upstream.url, cache, settings=CacheSettings(max_body_bytes=CAP)
    )
    async with serve(app) as url:
        yield Served(url, upstream, app.state.semantic_cache_middleware, cache)


def check_upstream_saw(body: bytes, response: RawResponse) -> None:
    assert response.status == 200, response.body[:200]
    answer = json.loads(response.body)
    assert answer == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    if refused(body):
        assert response.header("x-cache") == "BYPASS"


@HOSTILE
@given(body=malformed, framing=st.sampled_from(["length", "chunked"]))
async def test_malformed_bodies_reach_the_upstream_unchanged(
    served: Served, body: bytes, framing: str
) -> None:
    before = await served.rows()
    response = await served.post(body, framing=framing)
    if response.header("x-cache") == "HIT":
        # A damaged body that is still a valid request, answered from the cache.
        assert not refused(body)
        return
    check_upstream_saw(body, response)
    if refused(body):
        assert await served.rows() == before


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("where", ["param", "lookup", "top"])
async def test_deep_nesting(served: Served, framing: str, where: str) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    if where == "param":
        body = b'{"model":"m","messages":[{"role":"user","content":"q"}],"x":' + deep + b"}"
    elif where == "lookup":
        body = b'{"model":"m","messages":' + deep + b"}"
    else:
        body = deep
    before = await served.rows()
    response = await served.post(body, framing=framing)
    check_upstream_saw(body, response)
    assert await served.rows() == before


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_huge_strings(served: Served, model: str, framing: str) -> None:
    body = json.dumps(chat_body(model, "x" * (CAP // 2))).encode()
    response = await served.post(body, framing=framing)
    check_upstream_saw(body, response)
    assert response.header("x-cache") == "MISS"
    assert (await served.post(body, framing=framing)).header("x-cache") == "HIT"

    before = await served.rows()
    for hostile in (
        json.dumps(chat_body(model, "y" * 3 * CAP)).encode(),  # past the cap
        json.dumps(chat_body(model, "z" * (CAP // 2))).encode()[:-3] + b'\xff"}]}',
    ):
        response = await served.post(hostile, framing=framing)
        check_upstream_saw(hostile, response)
        assert response.header("x-cache") == "BYPASS"
    assert await served.rows() == before


@HOSTILE
@given(text=st.text(min_size=1, max_size=30), data=st.data())
async def test_content_length_shorter_than_the_body(
    served: Served, text: str, data: st.DataObject
) -> None:
    body = json.dumps(chat_body("m-short", text)).encode()
    cut = data.draw(st.integers(1, len(body) - 1))
    before = await served.rows()
    response = await send_raw(served.url, [request_head(UPLOAD, content_length=cut), body])
    assert response is not None
    check_upstream_saw(body[:cut], response)
    assert await served.rows() == before


@HOSTILE
@given(text=st.text(min_size=1, max_size=30), missing=st.integers(1, 10_000))
async def test_content_length_longer_than_the_body(served: Served, text: str, missing: int) -> None:
    body = json.dumps(chat_body("m-long", text)).encode()
    before = await served.rows()
    head = request_head(UPLOAD, content_length=len(body) + missing)
    await send_raw(served.url, [head, body], close_after=True)
    # The proxy still answers, and stored nothing for the abandoned request.
    ok = json.dumps(chat_body(f"m-{secrets.token_hex(4)}", "after")).encode()
    response = await served.post(ok)
    check_upstream_saw(ok, response)
    assert response.header("x-cache") == "MISS"
    assert await served.rows() == before + 1  # the follow-up's own entry
    assert served.mw.pending_stores == 0


@HOSTILE
@given(
    text=st.text(min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    framing=st.sampled_from(["length", "chunked"]),
)
async def test_slow_bodies(served: Served, text: str, cuts: list[int], framing: str) -> None:
    body = json.dumps(chat_body(f"m-{secrets.token_hex(4)}", text)).encode()
    at = sorted({c % len(body) for c in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(at)]
    if framing == "length":
        parts = [request_head(UPLOAD, content_length=len(body)), *pieces]
    else:
        parts = [request_head(UPLOAD, content_length=None), *chunked(pieces)]
    response = await send_raw(served.url, parts, delay=0.01)
    assert response is not None
    check_upstream_saw(body, response)
    assert response.header("x-cache") == "MISS"
    await served.mw.drain()
    again = await send_raw(served.url, parts, delay=0.01)
    assert again is not None
    assert again.status == 200
    assert again.header("x-cache") == "HIT"
    assert json.loads(again.body) == json.loads(response.body)


@HOSTILE
@given(
    cache_control=cache_controls,
    other=st.sampled_from(["x-request-id", "accept", "x-forwarded-for", "x-custom"]),
    value=header_values,
)
async def test_hostile_headers_never_make_a_5xx(
    served: Served, model: str, cache_control: str, other: str, value: str
) -> None:
    body = json.dumps(chat_body(model, "headers")).encode()
    head = request_head(
        UPLOAD, content_length=len(body), extra=[("Cache-Control", cache_control), (other, value)]
    )
    response = await send_raw(served.url, [head, body])
    assert response is not None
    if response.status == 400:
        # The HTTP server refused a byte of the head before any app ran.
        assert response.body == b"Invalid HTTP request received."
        return
    assert response.status == 200, response.body[:200]
    if response.header("x-cache") != "HIT":
        check_upstream_saw(body, response)
