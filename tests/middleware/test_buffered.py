"""Buffered miss / hit flow through httpx.ASGITransport, on a real Postgres + pgvector."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import psycopg
import pytest
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._middleware.extractors import trusted_extract_scope_from_server_side
from semanticcache._settings import CacheSettings, ResponseMode
from tests.middleware.conftest import Calls, chat_body, client_for, make_app

URL = "/v1/chat/completions"
PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"


async def post(mw: Any, body: Any, **kwargs: Any) -> Any:
    async with client_for(mw) as client:
        return await client.post(URL, json=body, **kwargs)


async def test_miss_then_exact_hit_replays_status_headers_and_body(
    mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    first = await post(mw, chat_body(model, PROMPT))
    assert first.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    await mw.drain()
    second = await post(mw, chat_body(model, PROMPT))
    assert calls.count == 1
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-match"] == "exact"
    assert float(second.headers["x-cache-similarity"]) == 1.0
    assert int(second.headers["age"]) >= 0
    assert second.content == first.content
    assert second.headers["content-length"] == str(len(first.content))
    assert second.headers["x-app"] == "yes"
    # Hop-by-hop fields (and those the Connection header names) are not replayed.
    assert "x-hop" not in second.headers
    assert second.headers.get("connection") != "keep-alive, x-hop"


async def test_semantic_hit_for_a_rewording(
    mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    hit = await post(mw, chat_body(model, REWORDED))
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-match"] == "semantic"
    assert 0.9 <= float(hit.headers["x-cache-similarity"]) < 1.0
    assert calls.count == 1


async def test_disagreeing_candidate_is_a_miss_not_an_error(
    pg_uri: str, calls: Calls, model: str
) -> None:
    # Near enough for the threshold (hashing similarity about 0.87), but a year the
    # cached question does not have: the agreement check refuses it, the app answers.
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=0.85) as c:
        mw = SemanticCacheMiddleware(make_app(calls), cache=c)
        await post(mw, chat_body(model, PROMPT))
        await mw.drain()
        second = await post(mw, chat_body(model, "What is the capital of France in 1700?"))
        assert second.headers["x-cache"] == "MISS"
        assert calls.count == 2
        assert (await c.stats()).lookups["disagreement"] == 1


async def test_a_candidate_the_verifier_refuses_is_a_miss_not_an_error(
    pg_uri: str, calls: Calls, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A probability threshold of 1.0 that no pair reaches: every candidate is refused.
    settings = CacheSettings(pg_uri=pg_uri, verifier="on", verifier_threshold=1.0)
    async with SemanticCache(embedder=HashingEmbedder(), settings=settings) as c:
        mw = SemanticCacheMiddleware(make_app(calls), cache=c)
        await post(mw, chat_body(model, PROMPT))
        await mw.drain()
        with caplog.at_level(logging.WARNING, logger="semanticcache"):
            second = await post(mw, chat_body(model, REWORDED))
        assert second.headers["x-cache"] == "MISS"
        assert calls.count == 2
        assert (await c.stats()).lookups["unverified"] == 1
        assert not [r for r in caplog.records if "lookup failed" in r.getMessage()]


async def test_different_parameters_or_context_never_share(
    mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    other_temp = await post(mw, chat_body(model, PROMPT, temperature=0.1))
    followup = {
        "model": model,
        "messages": [
            {"role": "user", "content": "Who wrote Hamlet?"},
            {"role": "assistant", "content": "Shakespeare."},
            {"role": "user", "content": PROMPT},
        ],
    }
    other_context = await post(mw, followup)
    assert other_temp.headers["x-cache"] == "MISS"
    assert other_context.headers["x-cache"] == "MISS"
    assert calls.count == 3


async def test_gate_methods_and_path_prefix(cache: SemanticCache, calls: Calls) -> None:
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, path_prefix="/v1/")
    async with client_for(mw) as client:
        got = await client.get(URL)
        outside = await client.post("/raw", json={"query": "x"})
    assert "x-cache" not in got.headers
    assert "x-cache" not in outside.headers
    assert calls.count == 2


async def test_authorization_bypasses_by_default(
    mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    auth = {"authorization": "Bearer alice"}
    first = await post(mw, chat_body(model, PROMPT), headers=auth)
    await mw.drain()
    second = await post(mw, chat_body(model, PROMPT), headers=auth)
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert calls.count == 2


async def test_authorized_requests_are_partitioned_per_credential(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    settings = dataclasses.replace(cache.settings, cache_authorized_requests=True)
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, settings=settings)
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    assert (await post(mw, chat_body(model, PROMPT), headers=alice)).headers["x-cache"] == "MISS"
    await mw.drain()
    assert (await post(mw, chat_body(model, PROMPT), headers=bob)).headers["x-cache"] == "MISS"
    assert (await post(mw, chat_body(model, PROMPT))).headers["x-cache"] == "MISS"
    await mw.drain()
    assert (await post(mw, chat_body(model, PROMPT), headers=alice)).headers["x-cache"] == "HIT"
    assert calls.count == 3


async def test_required_scope_from_trusted_server_side_state(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    settings = dataclasses.replace(cache.settings, require_cache_scope=True)

    async def extract_scope(request: Request, body: bytes) -> str | None:
        return await trusted_extract_scope_from_server_side(request)

    inner = SemanticCacheMiddleware(
        make_app(calls), cache=cache, settings=settings, extract_scope=extract_scope
    )

    async def auth(scope: Scope, receive: Receive, send: Send) -> None:
        # Stands for an authentication middleware that runs before the cache.
        for name, value in scope["headers"]:
            if name == b"x-user-tenant":
                scope.setdefault("state", {})["tenant_id"] = int(value)
        await inner(scope, receive, send)

    no_tenant = await post(auth, chat_body(model, PROMPT))
    assert no_tenant.headers["x-cache"] == "BYPASS"
    t1 = {"x-user-tenant": "1"}
    t2 = {"x-user-tenant": "2"}
    assert (await post(auth, chat_body(model, PROMPT), headers=t1)).headers["x-cache"] == "MISS"
    await inner.drain()
    assert (await post(auth, chat_body(model, PROMPT), headers=t2)).headers["x-cache"] == "MISS"
    await inner.drain()
    assert (await post(auth, chat_body(model, PROMPT), headers=t1)).headers["x-cache"] == "HIT"
    assert calls.count == 3


@pytest.mark.parametrize("trust", [False, True])
async def test_client_scope_header_only_with_trust(
    cache: SemanticCache, calls: Calls, model: str, trust: bool
) -> None:
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, trust_client_scope=trust)
    await post(mw, chat_body(model, PROMPT), headers={"x-semantic-cache-scope": "a"})
    await mw.drain()
    other = await post(mw, chat_body(model, PROMPT), headers={"x-semantic-cache-scope": "b"})
    assert other.headers["x-cache"] == ("MISS" if trust else "HIT")


async def test_invalid_json_bypasses_and_reaches_the_app_untouched(
    mw: SemanticCacheMiddleware, calls: Calls
) -> None:
    async with client_for(mw) as client:
        got = await client.post("/raw", content=b'{"query": "x",}')
    assert got.headers["x-cache"] == "BYPASS"
    assert calls.bodies == [b'{"query": "x",}']


async def test_no_lookup_text_bypasses(mw: SemanticCacheMiddleware, calls: Calls) -> None:
    async with client_for(mw) as client:
        got = await client.post("/raw", json={"other": 1})
    assert got.headers["x-cache"] == "BYPASS"


async def _drive(app: Any, chunks: list[bytes], path: str = "/raw") -> tuple[list[Message], int]:
    """Call ``app`` with the body in ``chunks`` (one ASGI message each); return what it sent
    and how many of the client's messages it read."""
    sent: list[Message] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    read = 0
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal read
        if queue:
            read += 1
            return queue.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent, read


async def test_body_over_the_cap_passes_through_unbuffered(
    cache: SemanticCache, calls: Calls
) -> None:
    settings = dataclasses.replace(cache.settings, max_body_bytes=64)
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, settings=settings)
    body = json.dumps({"query": "x" * 500}).encode()
    chunks = [body[i : i + 50] for i in range(0, len(body), 50)]
    sent, _ = await _drive(mw, chunks)
    start = sent[0]
    assert start["status"] == 200
    assert (b"x-cache", b"BYPASS") in start["headers"]
    assert calls.bodies == [body]


async def test_app_receive_waits_for_the_client_after_the_body(
    cache: SemanticCache, model: str
) -> None:
    seen: list[str] = []
    reached = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await receive()
        seen.append(body["type"])
        reached.set()
        # Like StreamingResponse: listen for the disconnect. It must not come at once.
        message = await receive()
        seen.append(message["type"])

    mw = SemanticCacheMiddleware(app, cache=cache)
    body = json.dumps(chat_body(model, PROMPT)).encode()

    async def receive() -> Message:
        if not seen and not reached.is_set():
            return {"type": "http.request", "body": body, "more_body": False}
        await release.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "query_string": b"",
        "headers": [],
    }
    task = asyncio.create_task(mw(scope, receive, send))
    await reached.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen == ["http.request"]
    release.set()
    await task
    assert seen == ["http.request", "http.disconnect"]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "500"},
        {"status": "201", "body": "[1, 2]"},
        {"set-cookie": "sid=1"},
        {"cache-control": "private"},
        {"cache-control": "max-age=5, no-store"},
        {"body": "not json"},
    ],
)
async def test_store_policy_refuses(
    mw: SemanticCacheMiddleware, calls: Calls, model: str, query: dict[str, str]
) -> None:
    body = {"model": model, "query": PROMPT}
    async with client_for(mw) as client:
        await client.post("/raw", params=query, json=body)
        await mw.drain()
        # A cookie the client kept would make the next request a bypass, not a miss.
        client.cookies.clear()
        again = await client.post("/raw", params=query, json=body)
    assert again.headers["x-cache"] == "MISS"
    assert calls.count == 2


async def test_validate_response_has_the_last_word(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    seen: list[int] = []

    async def validate(status: int, headers: Any, body: bytes) -> bool:
        seen.append(status)
        return b"answer 1" not in body

    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, validate_response=validate)
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    third = await post(mw, chat_body(model, PROMPT))
    assert seen == [200, 200]
    assert third.headers["x-cache"] == "HIT"
    assert b"answer 2" in third.content


async def test_request_cache_control_no_store_and_no_cache(
    mw: SemanticCacheMiddleware, calls: Calls, model: str
) -> None:
    await post(mw, chat_body(model, PROMPT), headers={"cache-control": "no-store"})
    await mw.drain()
    assert (await post(mw, chat_body(model, PROMPT))).headers["x-cache"] == "MISS"
    await mw.drain()
    # Stored now (answer 2); no-cache skips it and refreshes the entry (answer 3).
    refreshed = await post(mw, chat_body(model, PROMPT), headers={"cache-control": "no-cache"})
    assert refreshed.headers["x-cache"] == "MISS"
    await mw.drain()
    hit = await post(mw, chat_body(model, PROMPT))
    assert hit.headers["x-cache"] == "HIT"
    assert b"answer 3" in hit.content
    assert calls.count == 3


async def test_request_max_age(
    mw: SemanticCacheMiddleware, cache: SemanticCache, calls: Calls, model: str, pg_uri: str
) -> None:
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(
            f"UPDATE {cache.table} SET created_at = now() - interval '1 hour'"
            " WHERE lookup_text = %s",
            (PROMPT,),
        )
    old_ok = await post(mw, chat_body(model, PROMPT), headers={"cache-control": "max-age=7200"})
    assert old_ok.headers["x-cache"] == "HIT"
    assert int(old_ok.headers["age"]) >= 3600
    too_old = await post(mw, chat_body(model, PROMPT), headers={"cache-control": "max-age=60"})
    assert too_old.headers["x-cache"] == "MISS"
    assert calls.count == 2


async def test_upstream_timeout_answers_504(cache: SemanticCache, model: str) -> None:
    never = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await never.wait()

    settings = dataclasses.replace(cache.settings, upstream_timeout_seconds=0.05)
    mw = SemanticCacheMiddleware(slow, cache=cache, settings=settings)
    got = await post(mw, chat_body(model, PROMPT))
    assert got.status_code == 504
    assert got.json() == {"detail": "upstream timed out"}
    assert got.headers["x-cache"] == "MISS"


async def test_lifespan_shutdown_drains_pending_stores(
    mw: SemanticCacheMiddleware, model: str
) -> None:
    await post(mw, chat_body(model, PROMPT))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await mw({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert mw.pending_stores == 0
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert (await post(mw, chat_body(model, PROMPT))).headers["x-cache"] == "HIT"


async def test_damaged_entry_is_a_miss(
    mw: SemanticCacheMiddleware, cache: SemanticCache, calls: Calls, model: str
) -> None:
    await post(mw, chat_body(model, PROMPT))
    await mw.drain()
    async with await psycopg.AsyncConnection.connect(cache.settings.pg_uri or "") as conn:
        await conn.execute(
            f"UPDATE {cache.table} SET response = %s WHERE lookup_text = %s",
            (b"garbage", PROMPT),
        )
        await conn.commit()
    again = await post(mw, chat_body(model, PROMPT))
    assert again.headers["x-cache"] == "MISS"
    assert again.status_code == 200


async def test_failing_extractor_or_validator_fails_open(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    def bad_scope(request: Request, body: bytes) -> str | None:
        raise RuntimeError("boom")

    def bad_validator(status: int, headers: Any, body: bytes) -> bool:
        raise RuntimeError("boom")

    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, extract_scope=bad_scope)
    got = await post(mw, chat_body(model, PROMPT))
    assert got.status_code == 200
    assert got.headers["x-cache"] == "BYPASS"
    mw2 = SemanticCacheMiddleware(make_app(calls), cache=cache, validate_response=bad_validator)
    assert (await post(mw2, chat_body(model, PROMPT))).status_code == 200
    await mw2.drain()
    assert (await post(mw2, chat_body(model, PROMPT))).headers["x-cache"] == "MISS"


async def test_custom_query_and_model_extractors(
    cache: SemanticCache, calls: Calls, model: str
) -> None:
    async def query(request: Request, body: bytes) -> str | None:
        return "fixed lookup text"

    mw = SemanticCacheMiddleware(
        make_app(calls), cache=cache, extract_query=query, extract_model=lambda r, b: model
    )
    await post(mw, chat_body("ignored", "first wording"))
    await mw.drain()
    # Another message text, same extracted query and model: a hit.
    hit = await post(mw, chat_body("ignored", "second wording"))
    assert hit.headers["x-cache"] == "HIT"
    assert calls.count == 1


@pytest.mark.parametrize("mode", ["buffered", "tee"])
async def test_response_over_the_cap_is_forwarded_whole_and_not_stored(
    cache: SemanticCache, model: str, mode: ResponseMode
) -> None:
    big = json.dumps({"text": "y" * 300}).encode()
    calls = Calls()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        calls.count += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(0, len(big), 40):
            chunk = big[i : i + 40]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    settings = dataclasses.replace(cache.settings, max_body_bytes=200)
    mw = SemanticCacheMiddleware(app, cache=cache, settings=settings, response_mode=mode)
    small = {"model": model, "query": "q"}
    first = await post(mw, small)
    await mw.drain()
    second = await post(mw, small)
    assert first.content == second.content == big
    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert calls.count == 2
