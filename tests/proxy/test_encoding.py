"""Content-Encoding through the proxy: never a decoded body with an encoding header, on
misses and on hits; bytes the cache does not keep pass through as encoded."""

from __future__ import annotations

import gzip
import json

import httpx
from fastapi import FastAPI

from tests.proxy.conftest import CHAT, Upstream, chat_body, serve


async def test_pass_through_keeps_the_encoding_and_the_bytes(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async with (
        serve(proxy) as base,
        httpx.AsyncClient(base_url=base) as http,
        http.stream("GET", "/gzip", headers={"accept-encoding": "gzip"}) as got,
    ):
        raw = b"".join([chunk async for chunk in got.aiter_raw()])
        assert got.headers["content-encoding"] == "gzip"
        assert got.headers["content-length"] == str(len(raw))
    assert raw == upstream.gzip_body
    assert gzip.decompress(raw) == b'{"hello": "world"}' * 100
    # Not a request the cache considers: the client's Accept-Encoding went as it was.
    assert upstream.seen("accept-encoding") == ["gzip"]


async def test_cacheable_route_compressed_anyway_is_decoded_on_miss_and_hit(
    proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    url = "/v1/gzip" + CHAT
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        answers = []
        for outcome in ("MISS", "HIT"):
            async with http.stream(
                "POST", url, json=chat_body(model, "zip it"), headers={"accept-encoding": "gzip"}
            ) as got:
                raw = b"".join([chunk async for chunk in got.aiter_raw()])
            assert got.headers["x-cache"] == outcome
            assert "content-encoding" not in got.headers
            # No stale (compressed) length: none (chunked) or the decoded one.
            assert got.headers.get("content-length", str(len(raw))) == str(len(raw))
            answers.append(json.loads(raw))
            await proxy.state.semantic_cache_middleware.drain()
    assert answers[0] == answers[1]
    assert answers[0]["choices"][0]["message"]["content"] == "answer number 1"
    assert upstream.calls[url] == 1
    # The cache asked for an identity body in place of the client's gzip.
    assert upstream.seen("accept-encoding") == ["identity"]


async def test_an_encoding_the_proxy_cannot_undo_passes_through_and_is_never_stored(
    proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    url = "/v1/zstd" + CHAT
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(2):
            async with http.stream("POST", url, json=chat_body(model, "zstd it")) as got:
                raw = b"".join([chunk async for chunk in got.aiter_raw()])
            assert got.headers["x-cache"] == "MISS"
            assert got.headers["content-encoding"] == "zstd"
            assert json.loads(raw)["choices"][0]["message"]["content"] == "zstd"
            await proxy.state.semantic_cache_middleware.drain()
    assert upstream.calls[url] == 2
