"""Forwarder per-request cost, in process: one GET to a loopback aiohttp upstream,
directly with aiohttp (``direct``) and through the proxy's ``Forwarder`` called as an
ASGI app (``forwarder``: header filtering, the body pump and disconnect watch, the
response streamed to ``send``). Same event loop, same upstream, no HTTP server in front.
The HTTP load benchmark (uvicorn, concurrency) is ``benches/load_proxy.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.types import Message

from semanticcache._proxy import Forwarder

ANSWER = b'{"object": "list", "data": [{"id": "gpt-test", "object": "model"}]}'


async def models(_request: web.Request) -> web.Response:
    return web.Response(body=ANSWER, content_type="application/json")


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    url: str
    session: aiohttp.ClientSession
    forwarder: Forwarder


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> Setup:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        forwarder = Forwarder(url)
        await forwarder.start()
        return Setup(loop, url, aiohttp.ClientSession(), forwarder)

    ready = loop.run_until_complete(start())
    try:
        yield ready
    finally:

        async def stop() -> None:
            await ready.session.close()
            await ready.forwarder.close()
            await runner.cleanup()

        loop.run_until_complete(stop())
        loop.close()


async def direct(setup: Setup) -> bytes:
    async with setup.session.get(setup.url + "/v1/models") as response:
        return await response.read()


async def forwarded(setup: Setup) -> bytes:
    sent: list[Message] = []
    requests: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]
    done = asyncio.Event()

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await done.wait()  # as a server does: disconnect only after the response
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/models",
        "raw_path": b"/v1/models",
        "query_string": b"",
        "headers": [(b"host", b"proxy"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000),
    }
    await setup.forwarder(scope, receive, send)
    assert sent[0]["status"] == 200
    return b"".join(m.get("body", b"") for m in sent[1:])


def test_direct(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "proxy"
    assert benchmark(lambda: setup.loop.run_until_complete(direct(setup))) == ANSWER


def test_forwarder(benchmark: BenchmarkFixture, setup: Setup) -> None:
    benchmark.group = "proxy"
    assert benchmark(lambda: setup.loop.run_until_complete(forwarded(setup))) == ANSWER
