"""SemanticCacheMiddleware per-request cost, in process (raw ASGI calls, no HTTP server).

Group ``middleware``: ``baseline`` (the bare app, no middleware), ``bypass`` (an
Authorization request: gate + body replay), ``exact hit`` (body read, native scan, key,
one index probe, replay), ``semantic hit`` (plus embed + pgvector search), ``miss``
(lookup + app + store of a new entry, store awaited). The embedder is the hashing one
(no model), so the figures are the middleware's and Postgres's, not a provider's. The
HTTP load benchmark of issue 5 (uvicorn, concurrency, the original package) is separate
and not written yet.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.types import Message, Receive, Scope, Send

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._devserver import EmbeddedPostgres

URL = "/v1/chat/completions"
PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
            }
        ],
    }
).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def body(text: str) -> bytes:
    return json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]}).encode()


async def call(target: object, payload: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """One request through ``target``; the X-Cache header (``b""`` when absent)."""
    sent: list[Message] = []
    messages: list[Message] = [{"type": "http.request", "body": payload, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": URL, "query_string": b"", "headers": headers}
    await target(scope, receive, send)  # type: ignore[operator]
    start = sent[0]
    assert start["status"] == 200
    value: bytes = dict(start["headers"]).get(b"x-cache", b"")
    return value


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    cache: SemanticCache
    mw: SemanticCacheMiddleware


@pytest.fixture(scope="module")
def setup(pg_server: EmbeddedPostgres) -> Iterator[Setup]:
    name = f"b_mw_{secrets.token_hex(4)}"
    uri = pg_server.create_database(name)
    loop = asyncio.new_event_loop()
    cache = SemanticCache(pg_uri=uri, embedder=HashingEmbedder(), threshold=0.9)
    mw = SemanticCacheMiddleware(app, cache=cache)

    async def prepare() -> None:
        await cache.open()
        assert await call(mw, body(PROMPT), []) == b"MISS"
        await mw.drain()

    try:
        loop.run_until_complete(prepare())
        yield Setup(loop, cache, mw)
    finally:
        loop.run_until_complete(cache.close())
        loop.close()
        pg_server.drop_database(name)


def test_baseline_app(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "middleware"
    payload = body(PROMPT)
    assert benchmark(lambda: setup.loop.run_until_complete(call(app, payload, []))) == b""


def test_bypass(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "middleware"
    payload = body(PROMPT)
    auth = [(b"authorization", b"Bearer x")]
    got = benchmark(lambda: setup.loop.run_until_complete(call(setup.mw, payload, auth)))
    assert got == b"BYPASS"


def test_exact_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "middleware"
    payload = body(PROMPT)
    got = benchmark(lambda: setup.loop.run_until_complete(call(setup.mw, payload, [])))
    assert got == b"HIT"


def test_semantic_hit(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "middleware"
    payload = body(REWORDED)
    got = benchmark(lambda: setup.loop.run_until_complete(call(setup.mw, payload, [])))
    assert got == b"HIT"


def test_miss_and_store(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "middleware"

    async def miss() -> bytes:
        # Random text: no earlier entry is similar to it.
        got = await call(setup.mw, body(secrets.token_hex(12)), [])
        await setup.mw.drain()
        return got

    assert benchmark(lambda: setup.loop.run_until_complete(miss())) == b"MISS"
