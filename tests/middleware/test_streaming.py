"""Streaming: tee and buffered SSE misses, hits replayed in the client's shape, aborted
and unfinished streams never stored. Disconnects go through a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.types import Message

from semanticcache import SemanticCache, SemanticCacheMiddleware, _native
from semanticcache._middleware.record import decode_record
from tests.middleware.conftest import (
    URL,
    Calls,
    Stream,
    chat_app,
    chat_body,
    client_for,
    serve,
    sse_chunks,
)

PROMPT = "Tell me a short story about a lighthouse"


def middleware(
    cache: SemanticCache, calls: Calls, stream: Stream, **kwargs: Any
) -> SemanticCacheMiddleware:
    return SemanticCacheMiddleware(chat_app(calls, stream), cache=cache, **kwargs)


async def stored(cache: SemanticCache, mw: SemanticCacheMiddleware, body: Any) -> bytes | None:
    """The stored body for this request, or ``None``; looked up without the middleware."""
    await mw.drain()
    async with client_for(mw) as client:
        got = await client.post(URL, json=body, headers={"cache-control": "max-age=0, no-store"})
    if got.headers["x-cache"] != "HIT":
        return None
    return got.content


@pytest.mark.parametrize("mode", ["tee", "buffered"])
async def test_streamed_miss_is_stored_and_replayed_in_both_shapes(
    cache: SemanticCache, calls: Calls, model: str, mode: str
) -> None:
    mw = middleware(cache, calls, Stream(), response_mode=mode)
    body = chat_body(model, PROMPT, stream=True)
    async with client_for(mw) as client:
        first = await client.post(URL, json=body)
        assert first.headers["x-cache"] == "MISS"
        assert first.headers["content-type"].startswith("text/event-stream")
        await mw.drain()
        sse_hit = await client.post(URL, json=body)
        json_hit = await client.post(URL, json={**body, "stream": False})
    assert calls.count == 1
    assert sse_hit.headers["x-cache"] == "HIT"
    assert sse_hit.content == first.content  # the stream as the app sent it
    assert sse_hit.headers["content-length"] == str(len(first.content))
    assert json_hit.headers["x-cache"] == "HIT"
    assert json_hit.headers["content-type"] == "application/json"
    answer = json_hit.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "answer number 1"
    assert json_hit.headers["content-length"] == str(len(json_hit.content))


async def test_json_entry_is_rendered_as_sse_for_a_streaming_client(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = middleware(cache, calls, Stream())
    async with client_for(mw) as client:
        first = await client.post(URL, json=chat_body(model, PROMPT))
        await mw.drain()
        hit = await client.post(URL, json=chat_body(model, PROMPT, stream=True))
    assert calls.count == 1
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert hit.content.endswith(b"data: [DONE]\n\n")
    assembled = json.loads(_native.assemble_chat_completion(hit.content))
    assert assembled["choices"][0]["message"] == first.json()["choices"][0]["message"]


@pytest.mark.parametrize("mode", ["tee", "buffered"])
@pytest.mark.parametrize("end", ["truncated", "error"])
async def test_unfinished_or_error_streams_are_not_stored(
    cache: SemanticCache, calls: Calls, model: str, mode: str, end: str
) -> None:
    mw = middleware(cache, calls, Stream(end=end), response_mode=mode)
    body = chat_body(model, PROMPT, stream=True)
    async with client_for(mw) as client:
        got = await client.post(URL, json=body)
    assert got.headers["x-cache"] == "MISS"
    assert await stored(cache, mw, body) is None


async def test_stream_hit_mode_sends_one_event_per_message(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = middleware(cache, calls, Stream(), response_mode="tee")
    assert mw.hit_response_mode == "stream"
    body = json.dumps(chat_body(model, PROMPT, stream=True)).encode()
    async with client_for(mw) as client:
        await client.post(URL, content=body, headers={"content-type": "application/json"})
    await mw.drain()
    sent: list[Message] = []
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    # The Host the client above sent: the same target, the same entry.
    headers = [(b"host", b"test")]
    scope = {"type": "http", "method": "POST", "path": URL, "query_string": b"", "headers": headers}
    await mw(scope, receive, send)
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) == len(sse_chunks("answer number 1"))
    assert all(b.endswith(b"\n\n") for b in bodies)
    assert [m.get("more_body", False) for m in sent[1:]] == [True] * (len(bodies) - 1) + [False]


async def test_aborted_stream_over_uvicorn_is_never_stored(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    control = Stream(gate=asyncio.Event())
    mw = middleware(cache, calls, control, response_mode="tee")
    body = chat_body(model, PROMPT, stream=True)
    async with serve(mw) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("POST", URL, json=body) as response:
            assert response.headers["x-cache"] == "MISS"
            received = b""
            async for piece in response.aiter_bytes():
                received += piece
                if received.count(b"\n\n") >= 2:
                    break  # the client goes away mid-stream
        # Closing the response closed the connection: the app sees the disconnect.
        await control.finished.wait()
        await mw.drain()
        control.gate = None
        entry = await cache.lookup(_key_for(base, body))
    assert entry.hit is None


def _key_for(base: str, body: Any) -> Any:
    from semanticcache._key import CacheKey

    scan = _native.scan_request(json.dumps(body).encode())
    # The route is the whole target: the server's scheme, Host and path.
    key = CacheKey.from_scan(scan, route=base + URL)
    assert key is not None
    return key


async def test_complete_stream_over_uvicorn_is_stored(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    mw = middleware(cache, calls, Stream(), response_mode="tee")
    body = chat_body(model, PROMPT, stream=True)
    async with serve(mw) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.post(URL, json=body)
        await mw.drain()
        hit = await client.post(URL, json=body)
    assert first.headers["x-cache"] == "MISS"
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == first.content
    found = await cache.lookup(_key_for(base, body))
    assert found.hit is not None
    record = decode_record(found.hit.response)
    assert record is not None
    assert record.sse
    assert record.body == first.content


async def test_tee_timeout_after_the_headers_leaves_the_response_unfinished(
    cache: SemanticCache, model: str
) -> None:
    """The upstream sent headers and a first event, then hung past the timeout: the
    response is left unfinished (the server aborts it), never ended as if complete."""
    import dataclasses

    never = asyncio.Event()

    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await never.wait()

    settings = dataclasses.replace(cache.settings, upstream_timeout_seconds=0.05)
    mw = SemanticCacheMiddleware(hangs, cache=cache, settings=settings, response_mode="tee")
    prompt = "Tell me about a lighthouse keeper who never slept"
    body = json.dumps(chat_body(model, prompt, stream=True)).encode()
    sent: list[Message] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    await mw(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1]["more_body"] is True
    await mw.drain()
    async with cache.store.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT count(*) FROM {cache.table} WHERE lookup_text = %s", (prompt,)
        )
        assert await cur.fetchone() == (0,)


async def test_tee_timeout_bounds_each_pause_not_the_whole_stream(
    cache: SemanticCache, model: str
) -> None:
    """Once the response reaches the client, the upstream budget bounds each pause of
    the app: a stream that keeps coming for twice the budget is delivered whole and
    stored; the test above shows that a stream that stops is still cut."""
    import dataclasses

    events = [
        f'data: {{"choices":[{{"index":0,"delta":{{"content":"part {i} "}}}}]}}\n\n'.encode()
        for i in range(8)
    ]

    async def steady(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in events:
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    budget = 0.2
    settings = dataclasses.replace(cache.settings, upstream_timeout_seconds=budget)
    mw = SemanticCacheMiddleware(steady, cache=cache, settings=settings, response_mode="tee")
    prompt = "Recite the long poem about the patient river"
    body = chat_body(model, prompt, stream=True)
    started = asyncio.get_running_loop().time()
    async with serve(mw) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.post(URL, json=body)
        elapsed = asyncio.get_running_loop().time() - started
        await mw.drain()
        hit = await client.post(URL, json=body)
    assert elapsed > budget * 1.5  # the stream outlasted the budget...
    assert first.status_code == 200  # ...and came whole
    assert first.content == b"".join(events) + b"data: [DONE]\n\n"
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == first.content
