"""The official ``openai`` SDK as a real client of a FastAPI chat-completions app behind
the middleware, under uvicorn on loopback: misses and hits, streaming and not, and a hit
served across shapes (stream from a JSON entry and the reverse)."""

from __future__ import annotations

import dataclasses

import openai
import pytest

from semanticcache import SemanticCache, SemanticCacheMiddleware
from tests.middleware.conftest import Calls, Stream, chat_app, serve

PROMPT = "Explain the rules of chess in one sentence"


@pytest.fixture
def sdk_mw(cache: SemanticCache, calls: Calls) -> SemanticCacheMiddleware:
    # The SDK always sends "Authorization: Bearer <key>": cache those requests, keyed
    # by the credential.
    settings = dataclasses.replace(cache.settings, cache_authorized_requests=True)
    return SemanticCacheMiddleware(
        chat_app(calls, Stream()), cache=cache, settings=settings, response_mode="tee"
    )


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0)


async def test_sdk_json_miss_then_hit_and_stream_from_json_entry(
    sdk_mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": PROMPT}
    ]
    async with serve(sdk_mw) as base, client(base) as sdk:
        first = await sdk.chat.completions.with_raw_response.create(model=model, messages=messages)
        assert first.headers["x-cache"] == "MISS"
        await sdk_mw.drain()
        second = await sdk.chat.completions.with_raw_response.create(model=model, messages=messages)
        assert second.headers["x-cache"] == "HIT"
        assert second.parse().choices[0].message.content == "answer number 1"
        pieces: list[str] = []
        stream = await sdk.chat.completions.create(model=model, messages=messages, stream=True)
        async for chunk in stream:
            pieces.extend(c.delta.content or "" for c in chunk.choices)
        assert "".join(pieces) == "answer number 1"
    assert calls.count == 1


async def test_sdk_stream_miss_then_hit_and_json_from_stream_entry(
    sdk_mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": PROMPT}
    ]
    async with serve(sdk_mw) as base, client(base) as sdk:
        for _ in range(2):
            pieces: list[str] = []
            stream = await sdk.chat.completions.create(model=model, messages=messages, stream=True)
            async for chunk in stream:
                pieces.extend(c.delta.content or "" for c in chunk.choices)
            assert "".join(pieces) == "answer number 1"
            await sdk_mw.drain()
        plain = await sdk.chat.completions.create(model=model, messages=messages)
        assert plain.choices[0].message.content == "answer number 1"
        assert plain.choices[0].finish_reason == "stop"
    assert calls.count == 1


async def test_sdk_users_with_different_keys_do_not_share(
    sdk_mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": PROMPT}
    ]
    async with serve(sdk_mw) as base, client(base) as alice:
        await alice.chat.completions.create(model=model, messages=messages)
        await sdk_mw.drain()
        bob = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-bob", max_retries=0)
        async with bob:
            got = await bob.chat.completions.with_raw_response.create(
                model=model, messages=messages
            )
        assert got.headers["x-cache"] == "MISS"
    assert calls.count == 2
