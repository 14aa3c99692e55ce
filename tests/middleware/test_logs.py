"""No prompt text in any log line, at any level; prompt-derived fields are keyed digests."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware, _native
from semanticcache._settings import CacheSettings
from tests.middleware.conftest import URL, Calls, Stream, chat_app, client_for

SECRET = "zebraquartz confidential diagnosis for patient"
KEY = b"k" * 32


def _no_prompt(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "the flows above should have logged something"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        assert "zebraquartz" not in text.lower(), text


async def test_no_prompt_text_in_logs_of_every_flow(
    cache: SemanticCache, calls: Calls, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = dataclasses.replace(cache.settings, log_digest_key=KEY)
    mw = SemanticCacheMiddleware(chat_app(calls, Stream()), cache=cache, settings=settings)
    body = {"model": model, "messages": [{"role": "user", "content": SECRET}]}
    headers = {"x-request-id": "req-42\nforged"}
    async with client_for(mw) as client:
        assert (await client.post(URL, json=body, headers=headers)).headers["x-cache"] == "MISS"
        await mw.drain()
        assert (await client.post(URL, json=body, headers=headers)).headers["x-cache"] == "HIT"
        bypass = await client.post(URL, json=body, headers={"authorization": "Bearer x"})
        assert bypass.headers["x-cache"] == "BYPASS"
        broken = await client.post("/other", content=b'{"query": "zebraquartz",}')
        assert broken.headers["x-cache"] == "BYPASS"
    _no_prompt(caplog)
    digest = _native.hmac_sha256_hex(KEY, SECRET, 16)
    lines = [r.getMessage() for r in caplog.records if r.name == "semanticcache.middleware"]
    assert any(f"text={digest}" in line and "request_id=req-42forged" in line for line in lines)
    assert any("reason=authorization" in line for line in lines)
    assert any(f"route={URL}" in line for line in lines)
    # The first request's miss (a fresh partition: nothing near) says so.
    assert any("reason=miss nearest=none" in line for line in lines)


async def test_no_prompt_text_when_postgres_is_down(
    calls: Calls, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = CacheSettings(
        pg_uri="postgresql://nobody@127.0.0.1:1/none", store_timeout_seconds=0.5
    )
    # Not "async with": that opens the cache, and this Postgres is not there.
    cache = SemanticCache(embedder=HashingEmbedder(), settings=settings)
    try:
        mw = SemanticCacheMiddleware(chat_app(calls, Stream()), cache=cache)
        body = {"model": model, "messages": [{"role": "user", "content": SECRET}]}
        async with client_for(mw) as client:
            got = await client.post(URL, json=body)
            await mw.drain()
        assert got.status_code == 200
        assert got.headers["x-cache"] == "ERROR"
    finally:
        await cache.close()
    _no_prompt(caplog)
    assert any("reason=store_" in r.getMessage() for r in caplog.records)
