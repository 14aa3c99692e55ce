"""``X-Cache-Entry``: every hit names its entry by an opaque token (same entry, same token;
another entry, another token), misses carry none, and the token gives the id back only
under the key it was made with."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from psycopg import sql

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._entry_token import entry_id_of, entry_token
from tests.middleware.conftest import URL, chat_body, client_for

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
OTHER = "How many moons does Jupiter have?"
KEY = secrets.token_bytes(32)


def _app() -> FastAPI:
    app = FastAPI()

    @app.post(URL)
    async def chat(request: Request) -> Response:
        body = await request.body()
        # A header of the same name from the app is never replayed as the entry's.
        return JSONResponse({"n": len(body)}, headers={"x-cache-entry": "forged"})

    return app


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, log_digest_key=KEY)
    async with SemanticCache(settings=settings, embedder=HashingEmbedder()) as c:
        yield c


async def test_hits_carry_their_entry_token_and_misses_none(cache: SemanticCache) -> None:
    model = f"m-{secrets.token_hex(4)}"
    mw = SemanticCacheMiddleware(_app(), cache=cache)
    async with client_for(mw) as client:
        miss = await client.post(URL, json=chat_body(model, PROMPT))
        other_miss = await client.post(URL, json=chat_body(model, OTHER))
        await mw.drain()
        exact = await client.post(URL, json=chat_body(model, PROMPT))
        again = await client.post(URL, json=chat_body(model, PROMPT))
        semantic = await client.post(URL, json=chat_body(model, REWORDED))
        other = await client.post(URL, json=chat_body(model, OTHER))
    assert [r.headers["x-cache"] for r in (miss, other_miss)] == ["MISS", "MISS"]
    # The app's own header passes on a miss; the cache adds none.
    assert miss.headers.get_list("x-cache-entry") == ["forged"]
    hits = (exact, again, semantic, other)
    assert [r.headers["x-cache"] for r in hits] == ["HIT"] * 4
    assert semantic.headers["x-cache-match"] == "semantic"
    tokens = [r.headers.get_list("x-cache-entry") for r in hits]
    assert all(len(t) == 1 for t in tokens), tokens
    token, same, semantic_token, other_token = (t[0] for t in tokens)
    assert token == same == semantic_token
    assert other_token != token

    ids = {text: await _entry_id(cache, text) for text in (PROMPT, OTHER)}
    assert entry_id_of(KEY, cache.table, token) == ids[PROMPT]
    assert entry_id_of(KEY, cache.table, other_token) == ids[OTHER]
    # Another key (another deployment) or another table reads nothing from it.
    assert entry_id_of(secrets.token_bytes(32), cache.table, token) is None
    assert entry_id_of(KEY, cache.table + "_x", token) is None


async def _entry_id(cache: SemanticCache, text: str) -> int:
    # The module's database holds this test's entries only.
    async def find(conn: psycopg.AsyncConnection[Any]) -> int:
        query = sql.SQL("SELECT id FROM {} WHERE lookup_text = %s").format(
            sql.Identifier(cache.table)
        )
        row = await (await conn.execute(query, (text,))).fetchone()
        assert row is not None
        return int(row[0])

    return await cache.run_on_store(find)


@pytest.mark.parametrize("entry_id", [0, 1, 2, 41, 2**31, 2**63 - 1, 2**64 - 1])
def test_a_token_gives_its_id_back(entry_id: int) -> None:
    token = entry_token(KEY, "semcache_t", entry_id)
    assert len(token) == 32
    assert int(token, 16) >= 0
    assert entry_id_of(KEY, "semcache_t", token) == entry_id


def test_tokens_of_neighbouring_ids_share_nothing_visible() -> None:
    tokens = [entry_token(KEY, "semcache_t", i) for i in range(1, 65)]
    assert len(set(tokens)) == 64
    # A counting id would keep the high digits; these differ early and widely.
    assert len({t[:4] for t in tokens}) > 48
    assert all(str(i) not in t for i, t in zip(range(1000, 1010), tokens, strict=False))


@pytest.mark.parametrize(
    "token",
    ["", "zz" * 16, "00" * 16, "0" * 31, "0" * 33],
)
def test_anything_but_a_token_names_nothing(token: str) -> None:
    assert entry_id_of(KEY, "semcache_t", token) is None


def test_a_changed_digit_names_nothing() -> None:
    token = entry_token(KEY, "semcache_t", 7)
    for i in range(len(token)):
        digit = "1" if token[i] != "1" else "2"
        assert entry_id_of(KEY, "semcache_t", token[:i] + digit + token[i + 1 :]) is None


def test_ids_outside_64_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        entry_token(KEY, "t", -1)
    with pytest.raises(ValueError, match="64-bit"):
        entry_token(KEY, "t", 2**64)
