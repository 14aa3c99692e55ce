"""The middleware's side of Content-Encoding: the storable marker it gives the app, and
no stored response with an encoding (a hit replays stored bytes as they are)."""

from __future__ import annotations

import json

import pytest
from starlette.types import Receive, Scope, Send

from semanticcache import SemanticCache, SemanticCacheMiddleware
from semanticcache._middleware.asgi import STORABLE_EXTENSION
from tests.middleware.conftest import chat_body, client_for, completion


class App:
    """Answers a completion with the Content-Encoding it is given; records the scopes."""

    def __init__(self, encoding: bytes | None) -> None:
        self.encoding = encoding
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        while (await receive()).get("more_body", False):
            pass
        body = json.dumps(completion("encoded?")).encode()
        headers = [(b"content-type", b"application/json")]
        if self.encoding is not None:
            headers.append((b"content-encoding", self.encoding))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("encoding", [b"br", b"gzip", b"identity, zstd"])
async def test_a_response_with_a_content_encoding_is_never_stored(
    cache: SemanticCache, model: str, encoding: bytes
) -> None:
    app = App(encoding)
    mw = SemanticCacheMiddleware(app, cache=cache)
    async with client_for(mw) as http:
        for _ in range(2):
            # Raw bytes: the body is not really encoded, the client must not decode it.
            async with http.stream(
                "POST", "/v1/chat/completions", json=chat_body(model, "hi")
            ) as got:
                assert [c async for c in got.aiter_raw()] != []
                assert got.headers["x-cache"] == "MISS"
            await mw.drain()
    assert len(app.scopes) == 2


@pytest.mark.parametrize("encoding", [None, b"identity"])
async def test_an_identity_response_is_stored(
    cache: SemanticCache, model: str, encoding: bytes | None
) -> None:
    app = App(encoding)
    mw = SemanticCacheMiddleware(app, cache=cache)
    async with client_for(mw) as http:
        await http.post("/v1/chat/completions", json=chat_body(model, "hi"))
        await mw.drain()
        got = await http.post("/v1/chat/completions", json=chat_body(model, "hi"))
    assert got.headers["x-cache"] == "HIT"
    assert len(app.scopes) == 1


async def test_the_app_is_told_when_its_response_may_be_stored(
    cache: SemanticCache, model: str
) -> None:
    app = App(None)
    mw = SemanticCacheMiddleware(app, cache=cache)
    async with client_for(mw) as http:
        await http.post("/v1/chat/completions", json=chat_body(model, "one"))
        await http.post(
            "/v1/chat/completions",
            json=chat_body(model, "two"),
            headers={"cache-control": "no-store"},
        )
        await http.get("/v1/chat/completions")
        await http.post("/v1/chat/completions", content=b"not json")
        await mw.drain()
    marked = [STORABLE_EXTENSION in (s.get("extensions") or {}) for s in app.scopes]
    # A miss that may be stored; then no-store, a GET and a bypass: not marked.
    assert marked == [True, False, False, False]
