"""Hostile request bodies through the middleware under a real uvicorn: malformed JSON,
invalid UTF-8, deep nesting, huge strings, lying ``Content-Length``, slow bodies.

Whatever arrives, the cache causes no 5xx (the app answers, or the server's own client
error), nothing hangs, the app sees the bytes the client sent, and nothing is stored
for a body the scan refuses."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from semanticcache import SemanticCache, SemanticCacheMiddleware
from semanticcache._settings import CacheSettings
from tests.hostile import CAP, HOSTILE, cache_controls, header_values, malformed, refused
from tests.middleware.conftest import URL, Calls, chat_body, make_app, serve
from tests.rawhttp import RawResponse, chunked, request_head, send_raw


@dataclass
class Served:
    url: str
    mw: SemanticCacheMiddleware
    calls: Calls
    cache: SemanticCache

    async def rows(self) -> int:
        await self.mw.drain()
        return (await self.cache.stats()).rows

    async def post(self, body: bytes, *, framing: str = "length") -> RawResponse:
        length = len(body) if framing == "length" else None
        parts = [body] if framing == "length" else chunked([body])
        started = time.monotonic()
        response = await send_raw(self.url, [request_head(URL, content_length=length), *parts])
        assert response is not None
        assert time.monotonic() - started < 20
        return response


@pytest.fixture
async def served(cache: SemanticCache) -> AsyncIterator[Served]:
    calls = Calls()
    mw = SemanticCacheMiddleware(
        make_app(calls), cache=cache, settings=CacheSettings(max_body_bytes=CAP)
    )
    async with serve(mw) as url:
        yield Served(url, mw, calls, cache)


async def check_passed_through(served: Served, body: bytes, response: RawResponse) -> None:
    """The app answered with ``body`` as it was sent; a refused body stored nothing."""
    assert response.status == 200, response.body[:200]
    assert served.calls.bodies[-1] == body
    if refused(body):
        assert response.header("x-cache") == "BYPASS"


# --- tests --------------------------------------------------------------------------


@HOSTILE
@given(body=malformed, framing=st.sampled_from(["length", "chunked"]))
async def test_malformed_bodies_reach_the_app_unchanged(
    served: Served, body: bytes, framing: str
) -> None:
    before = await served.rows()
    response = await served.post(body, framing=framing)
    await check_passed_through(served, body, response)
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
    await check_passed_through(served, body, response)
    assert response.header("x-cache") == "BYPASS"
    assert await served.rows() == before


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_huge_strings(served: Served, model: str, framing: str) -> None:
    text = "x" * (CAP // 2)  # under the cap: cached like any other body
    body = json.dumps(chat_body(model, text)).encode()
    response = await served.post(body, framing=framing)
    await check_passed_through(served, body, response)
    assert response.header("x-cache") == "MISS"
    assert (await served.post(body, framing=framing)).header("x-cache") == "HIT"

    before = await served.rows()
    for hostile in (
        json.dumps(chat_body(model, "y" * 3 * CAP)).encode(),  # past the cap
        json.dumps(chat_body(model, "z" * (CAP // 2))).encode()[:-3] + b'\xff"}]}',
    ):
        response = await served.post(hostile, framing=framing)
        await check_passed_through(served, hostile, response)
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
    # The server reads Content-Length bytes: that is the body; the rest is not a request.
    response = await send_raw(served.url, [request_head(URL, content_length=cut), body])
    assert response is not None
    await check_passed_through(served, body[:cut], response)
    assert response.header("x-cache") == "BYPASS"
    assert await served.rows() == before


@HOSTILE
@given(text=st.text(min_size=1, max_size=30), missing=st.integers(1, 10_000))
async def test_content_length_longer_than_the_body(served: Served, text: str, missing: int) -> None:
    body = json.dumps(chat_body("m-long", text)).encode()
    before = await served.rows()
    calls = served.calls.count
    # The client promises more than it sends, then gives up.
    head = request_head(URL, content_length=len(body) + missing)
    await send_raw(served.url, [head, body], close_after=True)
    # Nothing was stored, nothing is left running, and the server still answers.
    ok = json.dumps(chat_body(f"m-{secrets.token_hex(4)}", "after")).encode()
    response = await served.post(ok)
    assert response.status == 200
    assert served.calls.bodies[-1] == ok
    assert served.calls.count <= calls + 2
    assert await served.rows() <= before + 1  # the follow-up request's own entry
    assert served.mw.pending_stores == 0


@HOSTILE
@given(
    text=st.text(min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    framing=st.sampled_from(["length", "chunked"]),
)
async def test_slow_bodies(served: Served, text: str, cuts: list[int], framing: str) -> None:
    # A model of its own: the first exchange is a miss, the app sees it.
    body = json.dumps(chat_body(f"m-{secrets.token_hex(4)}", text)).encode()
    at = sorted({c % len(body) for c in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(at)]
    if framing == "length":
        parts = [request_head(URL, content_length=len(body)), *pieces]
    else:
        parts = [request_head(URL, content_length=None), *chunked(pieces)]
    response = await send_raw(served.url, parts, delay=0.01)
    assert response is not None
    await check_passed_through(served, body, response)
    assert response.header("x-cache") == "MISS"
    await served.mw.drain()
    # The same body sent slowly again is answered from the cache.
    again = await send_raw(served.url, parts, delay=0.01)
    assert again is not None
    assert again.status == 200
    assert again.header("x-cache") == "HIT"
    assert json.loads(again.body) == json.loads(response.body)


async def test_a_stalled_body_does_not_block_other_requests(served: Served, model: str) -> None:
    # A client that sends half its body and stalls holds its own request only.
    body = json.dumps(chat_body(model, "stalled")).encode()
    reader, writer = await asyncio.open_connection(*served.url[len("http://") :].split(":"))
    writer.write(request_head(URL, content_length=len(body)) + body[:10])
    await writer.drain()
    try:
        ok = json.dumps(chat_body(model, "other")).encode()
        response = await served.post(ok)
        assert response.status == 200
        assert response.header("x-cache") == "MISS"
    finally:
        writer.close()
        await writer.wait_closed()
    del reader


@pytest.mark.parametrize("valid", [True, False])
async def test_a_body_in_very_many_chunks_is_replayed_in_linear_time(
    cache: SemanticCache, model: str, valid: bool
) -> None:
    # An ASGI server hands over what each socket read brought: a client that trickles
    # its body byte by byte makes as many chunks. The app still gets them, in order.
    body = json.dumps(chat_body(model, "many chunks")).encode()
    body = b" " * (400_000 - len(body)) + body  # leading white space: still valid JSON
    if not valid:
        body = body[:-1]
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    chunks = iter([body[i : i + 1] for i in range(len(body))])

    async def receive() -> Message:
        chunk = next(chunks, b"")
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    mw = SemanticCacheMiddleware(app, cache=cache)
    scope: Scope = {"type": "http", "method": "POST", "path": URL, "headers": []}
    started = time.monotonic()
    await asyncio.wait_for(mw(scope, receive, send), 60)
    assert time.monotonic() - started < 8
    assert b"".join(seen) == body
    assert sent[0]["status"] == 200
    await mw.drain()


@HOSTILE
@given(
    cache_control=cache_controls,
    other=st.sampled_from(["x-request-id", "content-type", "accept", "x-forwarded-for"]),
    value=header_values,
)
async def test_hostile_headers_never_make_a_5xx(
    served: Served, model: str, cache_control: str, other: str, value: str
) -> None:
    body = json.dumps(chat_body(model, "headers")).encode()
    head = request_head(
        URL, content_length=len(body), extra=[("Cache-Control", cache_control), (other, value)]
    )
    response = await send_raw(served.url, [head, body])
    assert response is not None
    if response.status == 400:
        # The HTTP server refused a byte of the head: its own client error, sent before
        # any app (or cache) ran.
        assert response.body == b"Invalid HTTP request received."
        return
    assert response.status == 200, response.body[:200]
    assert response.header("x-cache") in ("MISS", "HIT", "BYPASS")


async def test_a_max_age_of_thousands_of_digits_is_any_age(served: Served, model: str) -> None:
    body = json.dumps(chat_body(model, "old enough")).encode()
    first = await served.post(body)
    assert first.header("x-cache") == "MISS"
    await served.mw.drain()
    for value in ("9" * 5000, "0" * 5000 + "7200"):
        head = request_head(
            URL, content_length=len(body), extra=[("Cache-Control", f"max-age={value}")]
        )
        response = await send_raw(served.url, [head, body])
        assert response is not None
        assert response.status == 200
        assert response.header("x-cache") == "HIT"
