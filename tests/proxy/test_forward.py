"""Forwarding through the proxy under uvicorn: methods, paths, headers both ways, large
bodies streamed both ways, upstream errors, and a client that goes away."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from semanticcache import SemanticCache, create_semantic_cache_proxy_app
from semanticcache._settings import ResponseMode
from tests.proxy.conftest import CHAT, PATTERN, Upstream, chat_body, serve, stream_of
from tests.servers import free_port

BIG = 50 * 1024 * 1024


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "POST"])
async def test_every_method_and_path_is_forwarded(
    proxy: FastAPI, upstream: Upstream, method: str
) -> None:
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.request(method, "/any/where/a%2Fb", params={"q": "x y", "n": "1"})
    assert got.status_code == 200
    assert got.json() == {"path": "/any/where/a/b", "method": method}
    # The raw path (percent-escapes kept) and the query string, as sent.
    assert upstream.raw_paths[-1] == "/any/where/a%2Fb?q=x+y&n=1"


async def test_a_path_that_looks_like_a_host_stays_on_the_upstream(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async with serve(proxy) as base:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
        writer.write(b"GET //example.com/x HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert upstream.raw_paths[-1] == "//example.com/x"


async def test_upstream_base_path_is_prefixed(upstream: Upstream, cache: SemanticCache) -> None:
    app = create_semantic_cache_proxy_app(upstream.url + "/base/", cache)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.get("/x/y?z=1")
    assert got.json()["path"] == "/base/x/y"
    assert upstream.raw_paths[-1] == "/base/x/y?z=1"


async def test_hop_by_hop_request_headers_removed_and_forwarded_headers_added(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.get(
            "/echo",
            headers={
                "Connection": "keep-alive, X-Client-Hop",
                "X-Client-Hop": "secret",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic eA==",
                "Upgrade": "h2c",
                "X-Forwarded-For": "203.0.113.7",
                "X-Custom": "end-to-end",
                "Authorization": "Bearer kept",
            },
        )
    names = {n.lower() for n, _ in upstream.headers[-1]}
    for hop in ("x-client-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert hop not in names
    assert upstream.seen("x-custom") == ["end-to-end"]
    assert upstream.seen("authorization") == ["Bearer kept"]
    # Appended to the client's chain; proto and host of the request the proxy received.
    assert upstream.seen("x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
    assert upstream.seen("x-forwarded-proto") == ["http"]
    assert upstream.seen("x-forwarded-host") == [base.removeprefix("http://")]
    # Host names the upstream; nothing the client did not send is added.
    assert upstream.seen("host") == [upstream.url.removeprefix("http://")]
    assert upstream.seen("user-agent") == [got.request.headers["user-agent"]]
    assert upstream.seen("accept-encoding") == [got.request.headers["accept-encoding"]]


async def test_no_accept_encoding_is_added_for_a_client_that_sent_none(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async with serve(proxy) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n")
        await reader.read()
        writer.close()
    names = {n.lower() for n, _ in upstream.headers[-1]}
    assert "accept-encoding" not in names
    assert "user-agent" not in names
    assert "accept" not in names
    assert upstream.seen("x-forwarded-host") == ["proxy"]


async def test_hop_by_hop_response_headers_removed(proxy: FastAPI, upstream: Upstream) -> None:
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.get("/hop")
    assert got.text == "hop"
    assert got.headers["x-end"] == "kept"
    assert "x-secret-hop" not in got.headers
    assert "proxy-authenticate" not in got.headers
    assert "x-cache" not in got.headers  # GET is not a method the cache considers


async def test_several_set_cookie_pass_through_and_are_not_kept_by_the_proxy(
    upstream: Upstream, cache: SemanticCache
) -> None:
    # A host name, not an IP: aiohttp's default cookie jar ignores IP hosts, and the
    # point is that the proxy keeps no cookie jar at all.
    proxy = create_semantic_cache_proxy_app(upstream.url.replace("127.0.0.1", "localhost"), cache)
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.get("/cookies")
        assert got.headers.get_list("set-cookie") == [
            "session=one; Path=/; HttpOnly",
            "theme=dark; Path=/",
        ]
        # Another client: the proxy's shared session must not send those cookies on.
        async with httpx.AsyncClient(base_url=base) as other:
            await other.get("/echo")
    assert "cookie" not in {n.lower() for n, _ in upstream.headers[-1]}


async def test_set_cookie_responses_are_never_stored_nor_replayed(
    proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    url = "/v1/cookies" + CHAT
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(2):
            got = await http.post(url, json=chat_body(model, "hello there"))
            assert got.headers["x-cache"] == "MISS"
            assert got.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
            await proxy.state.semantic_cache_middleware.drain()
            # Cookies the client kept would make the next request a bypass.
            http.cookies.clear()
    assert upstream.calls[url] == 2


async def test_50mb_upload_is_streamed_to_the_upstream(proxy: FastAPI, upstream: Upstream) -> None:
    pieces = stream_of(BIG)
    half = len(pieces) // 2

    async def body() -> AsyncIterator[bytes]:
        for i, piece in enumerate(pieces):
            if i == half:
                # The second half only once the upstream has bytes: a proxy that read
                # the whole body before forwarding would never get here (timeout).
                await asyncio.wait_for(upstream.upload_started.wait(), 60)
            yield piece

    async with serve(proxy) as base, httpx.AsyncClient(base_url=base, timeout=120) as http:
        got = await http.post("/upload", content=body(), headers={"content-length": str(BIG)})
    expected = hashlib.sha256(b"".join(pieces)).hexdigest()
    assert got.status_code == 200
    assert got.json() == {"sha256": expected, "size": BIG}
    # Through the middleware (POST): too big to key, passed through.
    assert got.headers["x-cache"] == "BYPASS"


async def test_chunked_upload_without_length_is_streamed(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield PATTERN

    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.put("/upload", content=body())
    assert got.json() == {
        "sha256": hashlib.sha256(PATTERN * 3).hexdigest(),
        "size": 3 * len(PATTERN),
    }


async def test_50mb_download_is_streamed_to_the_client(proxy: FastAPI, upstream: Upstream) -> None:
    digest = hashlib.sha256()
    size = 0
    async with (
        serve(proxy) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as http,
        http.stream("GET", "/download", params={"size": str(BIG)}) as got,
    ):
        assert got.headers["content-length"] == str(BIG)
        async for chunk in got.aiter_raw():
            # Bytes before the upstream sent its second half: nothing held it whole.
            upstream.download_seen.set()
            digest.update(chunk)
            size += len(chunk)
    assert size == BIG
    assert digest.hexdigest() == hashlib.sha256(b"".join(stream_of(BIG))).hexdigest()


async def test_upstream_timeout_is_a_504_json(upstream: Upstream, cache: SemanticCache) -> None:
    app = create_semantic_cache_proxy_app(upstream.url, cache, timeout=0.5)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.get("/slow")
    assert got.status_code == 504
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"detail": "upstream timed out"}


async def test_upstream_timeout_on_a_cacheable_request_is_a_504_json(
    upstream: Upstream, cache: SemanticCache, model: str
) -> None:
    app = create_semantic_cache_proxy_app(upstream.url, cache, timeout=0.5, path_prefix="/slow")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.post("/slow", json=chat_body(model, "anything"))
    assert got.status_code == 504
    assert got.json() == {"detail": "upstream timed out"}
    assert got.headers["x-cache"] == "MISS"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_refused_connection_is_a_502_json(
    cache: SemanticCache, model: str, method: str
) -> None:
    app = create_semantic_cache_proxy_app(f"http://127.0.0.1:{free_port()}", cache)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.request(method, CHAT, json=chat_body(model, "hi"))
    assert got.status_code == 502
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"detail": "bad gateway: could not connect to the upstream"}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_upstream_that_dies_mid_body_gives_a_cut_response_never_stored(
    proxy: FastAPI, upstream: Upstream, model: str, method: str
) -> None:
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await http.request(method, "/cut", json=chat_body(model, "cut me"))
            await proxy.state.semantic_cache_middleware.drain()
    assert upstream.calls["/cut"] == 2


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        ("GET", "/forever", "buffered"),
        ("POST", "/v1/forever" + CHAT, "buffered"),
        ("POST", "/v1/forever" + CHAT, "tee"),
    ],
)
async def test_client_disconnect_cancels_the_upstream_request(
    upstream: Upstream,
    cache: SemanticCache,
    model: str,
    method: str,
    path: str,
    mode: ResponseMode,
) -> None:
    app = create_semantic_cache_proxy_app(upstream.url, cache, response_mode=mode)
    body = json.dumps(chat_body(model, "never ending", stream=True)).encode()
    async with serve(app) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"{method} {path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.wait_for(upstream.arrived.wait(), 30)
        if mode == "tee" or method == "GET":
            # Streamed: the client has bytes before it leaves.
            assert (await reader.read(1)) == b"H"
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(upstream.cancelled.wait(), 30)
    assert upstream.calls[path] == 1


async def test_head_gets_the_headers_and_no_body(proxy: FastAPI, upstream: Upstream) -> None:
    async with serve(proxy) as base, httpx.AsyncClient(base_url=base) as http:
        head = await http.head("/echo")
    assert head.status_code == 200
    assert head.content == b""
    # The length of the body a GET would have had, as the upstream said.
    expected = json.dumps({"path": "/echo", "method": "HEAD"}).encode()
    assert head.headers["content-length"] == str(len(expected))
    assert upstream.calls["/echo"] == 1


async def test_client_disconnect_mid_upload_cancels_the_upstream_request(
    proxy: FastAPI, upstream: Upstream
) -> None:
    async with serve(proxy) as base:
        port = int(base.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"PUT /upload HTTP/1.1\r\nhost: proxy\r\ncontent-length: {BIG}\r\n\r\n".encode()
        )
        for piece in stream_of(1024 * 1024):
            writer.write(piece)
        await writer.drain()
        await asyncio.wait_for(upstream.upload_started.wait(), 30)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(upstream.cancelled.wait(), 30)
    assert upstream.upload_size == 0  # the upstream never saw a complete upload
