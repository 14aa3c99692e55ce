"""The official ``openai`` SDK as the client of the proxy (under uvicorn on loopback) in
front of a local OpenAI-compatible upstream: misses reach the upstream, hits do not,
streaming and not."""

from __future__ import annotations

import dataclasses

import openai
import pytest
from fastapi import FastAPI

from semanticcache import SemanticCache, create_semantic_cache_proxy_app
from tests.proxy.conftest import CHAT, Upstream, serve

PROMPT = "Explain the rules of chess in one sentence"
REWORDED = "explain the rules of chess in one sentence, please"


@pytest.fixture(params=["buffered", "tee"])
def sdk_proxy(request: pytest.FixtureRequest, upstream: Upstream, cache: SemanticCache) -> FastAPI:
    # The SDK always sends "Authorization: Bearer <key>": cache those requests, keyed
    # by the credential.
    settings = dataclasses.replace(cache.settings, cache_authorized_requests=True)
    return create_semantic_cache_proxy_app(
        upstream.url, cache, settings=settings, response_mode=request.param
    )


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0)


def messages(text: str) -> list[openai.types.chat.ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def test_json_miss_then_exact_and_semantic_hits(
    sdk_proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    async with serve(sdk_proxy) as base, client(base) as sdk:
        first = await sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages(PROMPT)
        )
        assert first.headers["x-cache"] == "MISS"
        assert first.parse().choices[0].message.content == "answer number 1"
        await sdk_proxy.state.semantic_cache_middleware.drain()
        second = await sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages(PROMPT)
        )
        assert second.headers["x-cache"] == "HIT"
        assert second.headers["x-cache-match"] == "exact"
        assert second.parse().choices[0].message.content == "answer number 1"
        third = await sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages(REWORDED)
        )
        assert third.headers["x-cache"] == "HIT"
        assert third.headers["x-cache-match"] == "semantic"
        assert third.parse().choices[0].message.content == "answer number 1"
    assert upstream.calls[CHAT] == 1
    # The SDK's own headers reached the upstream.
    assert upstream.seen("authorization") == ["Bearer sk-test"]


async def test_stream_miss_then_hit_and_json_from_the_stream_entry(
    sdk_proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    async with serve(sdk_proxy) as base, client(base) as sdk:
        for _ in range(2):
            pieces: list[str] = []
            stream = await sdk.chat.completions.create(
                model=model, messages=messages(PROMPT), stream=True
            )
            async for chunk in stream:
                pieces.extend(c.delta.content or "" for c in chunk.choices)
            assert "".join(pieces) == "answer number 1"
            await sdk_proxy.state.semantic_cache_middleware.drain()
        plain = await sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages(PROMPT)
        )
        assert plain.headers["x-cache"] == "HIT"
        assert plain.parse().choices[0].message.content == "answer number 1"
    assert upstream.calls[CHAT] == 1


async def test_different_api_keys_never_share(
    sdk_proxy: FastAPI, upstream: Upstream, model: str
) -> None:
    async with serve(sdk_proxy) as base, client(base) as alice:
        await alice.chat.completions.create(model=model, messages=messages(PROMPT))
        await sdk_proxy.state.semantic_cache_middleware.drain()
        bob = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-bob", max_retries=0)
        async with bob:
            got = await bob.chat.completions.with_raw_response.create(
                model=model, messages=messages(PROMPT)
            )
        assert got.headers["x-cache"] == "MISS"
        assert got.parse().choices[0].message.content == "answer number 2"
    assert upstream.calls[CHAT] == 2
