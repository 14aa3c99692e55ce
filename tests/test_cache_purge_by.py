"""purge(route=, model=): only the entries of that route or model go, from every tier
(Postgres, this process's and other processes' hot entries, Redis), alone or with
scope= and older_than=; the middleware stores the route and model its keys are built on."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
import redis
from psycopg import sql

from semanticcache import (
    CacheKey,
    ConfigurationError,
    HashingEmbedder,
    SemanticCache,
    SemanticCacheMiddleware,
)
from semanticcache._middleware.headers import vary_route
from tests.middleware.conftest import Calls, chat_body, client_for, make_app
from tests.test_cache_hot import eventually, notices_held, remembered, serving

QUESTION = "What is the boiling point of water at sea level?"


@pytest.fixture
def tag() -> str:
    """Routes, models and scopes of their own for each test, in the shared table."""
    return secrets.token_hex(4)


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9) as c:
        yield c


async def _stored(pg_uri: str, table: str, entry_id: int) -> tuple[str, str | None]:
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT route, model FROM {} WHERE id = %s").format(sql.Identifier(table)),
            (entry_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row[0]), None if row[1] is None else str(row[1])


async def _age(pg_uri: str, table: str, entry_id: int, seconds: int) -> None:
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "UPDATE {} SET created_at = now() - make_interval(secs => %s) WHERE id = %s"
            ).format(sql.Identifier(table)),
            (seconds, entry_id),
        )


async def test_purge_by_route_keeps_the_same_prompt_of_another_route(
    cache: SemanticCache, tag: str
) -> None:
    a = CacheKey(QUESTION, route=f"/a/{tag}")
    b = CacheKey(QUESTION, route=f"/b/{tag}")
    await cache.put(a, b"from a", raise_errors=True)
    await cache.put(b, b"from b", raise_errors=True)
    assert await cache.purge(route=f"/a/{tag}") == 1
    assert await cache.get(a) is None
    kept = await cache.get(b)
    assert kept is not None
    assert kept.response == b"from b"
    assert await cache.purge(route=f"/a/{tag}") == 0


async def test_purge_by_model_keeps_the_same_prompt_of_another_model(
    cache: SemanticCache, tag: str, pg_uri: str
) -> None:
    x = CacheKey(QUESTION, route=f"/r/{tag}", model=f"x-{tag}")
    y = CacheKey(QUESTION, route=f"/r/{tag}", model=f"y-{tag}")
    unnamed = CacheKey(QUESTION, route=f"/r/{tag}")
    for key in (x, y, unnamed):
        await cache.put(key, (key.model or "none").encode(), raise_errors=True)
    hit = await cache.get(unnamed)
    assert hit is not None
    assert await _stored(pg_uri, cache.table, hit.entry_id) == (f"/r/{tag}", None)
    assert await cache.purge(model=f"x-{tag}") == 1
    assert await cache.get(x) is None
    for key in (y, unnamed):
        kept = await cache.get(key)
        assert kept is not None
        assert kept.response == (key.model or "none").encode()


async def test_route_and_model_combine_with_scope_and_age(
    cache: SemanticCache, tag: str, pg_uri: str
) -> None:
    route, model = f"/r/{tag}", f"m-{tag}"
    keys = {
        name: CacheKey(f"{QUESTION} {name}", scope=scope, route=r, model=m)
        for name, scope, r, m in [
            ("old", f"s-{tag}", route, model),
            ("young", f"s-{tag}", route, model),
            ("other_scope", f"t-{tag}", route, model),
            ("other_model", f"s-{tag}", route, f"n-{tag}"),
            ("other_route", f"s-{tag}", f"/q/{tag}", model),
        ]
    }
    ids = {}
    for name, key in keys.items():
        entry_id = await cache.put(key, name.encode(), raise_errors=True)
        assert entry_id is not None
        ids[name] = entry_id
        await _age(pg_uri, cache.table, entry_id, 7200)
    await _age(pg_uri, cache.table, ids["young"], 10)
    purged = await cache.purge(scope=f"s-{tag}", route=route, model=model, older_than=3600)
    assert purged == 1
    assert await cache.get(keys["old"]) is None
    for name in ("young", "other_scope", "other_model", "other_route"):
        kept = await cache.get(keys[name])
        assert kept is not None, name
        assert kept.response == name.encode()
    # Without the age: the young one goes too, and only it.
    assert await cache.purge(scope=f"s-{tag}", route=route, model=model) == 1
    assert await cache.get(keys["young"]) is None
    assert await cache.get(keys["other_route"]) is not None


async def test_a_route_purge_takes_every_vary_variant(
    cache: SemanticCache, tag: str, pg_uri: str
) -> None:
    target = f"http://test/v1/chat/{tag}"
    # The routes the middleware makes for a response that varies on Accept-Language.
    variants = [
        CacheKey(QUESTION, route=vary_route(target, ("accept-language",), headers))
        for headers in ([(b"accept-language", b"en")], [(b"accept-language", b"fr")], [])
    ]
    assert len({key.route for key in variants}) == 3
    plain = CacheKey(QUESTION, route=target)
    for key in (*variants, plain):
        await cache.put(key, b"answer", raise_errors=True)
    hit = await cache.get(variants[0])
    assert hit is not None
    # What is stored is the target, not the varied header values.
    assert (await _stored(pg_uri, cache.table, hit.entry_id))[0] == target
    assert await cache.purge(route=target) == 4
    for key in (*variants, plain):
        assert await cache.get(key) is None


@pytest.mark.parametrize(
    "selectors",
    [{"route": ""}, {"model": ""}, {"route": 7}, {"model": b"m"}, {"all": True, "route": "/a"}],
)
async def test_bad_route_or_model_is_refused(
    cache: SemanticCache, tag: str, selectors: dict[str, object]
) -> None:
    key = CacheKey(QUESTION, route=f"/a/{tag}", model=f"m-{tag}")
    await cache.put(key, b"kept", raise_errors=True)
    with pytest.raises(ConfigurationError):
        await cache.purge(**selectors)  # type: ignore[arg-type]
    assert await cache.get(key) is not None


async def test_another_process_with_hot_entries_stops_serving_the_purged_route(
    pg_uri: str, tag: str
) -> None:
    writer = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9)
    reader = SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9, hot_entries=100
    )
    async with writer, reader:
        await serving(reader)
        a = CacheKey(QUESTION, route=f"/a/{tag}", model=f"m-{tag}")
        b = CacheKey(QUESTION, route=f"/b/{tag}", model=f"m-{tag}")
        await writer.put(a, b"from a", raise_errors=True)
        await writer.put(b, b"from b", raise_errors=True)
        await remembered(reader, a, b"from a")
        await remembered(reader, b, b"from b")
        assert await writer.purge(route=f"/a/{tag}") == 1

        async def gone() -> bool:
            return await reader.get(a) is None

        await eventually(gone)
        kept = await reader.get(b)
        assert kept is not None
        assert kept.response == b"from b"
        assert await writer.purge(model=f"m-{tag}") == 1
        await eventually(lambda: _none(reader, b))


async def _none(cache: SemanticCache, key: CacheKey) -> bool:
    return await cache.get(key) is None


@pytest.mark.parametrize("selector", ["route", "model"])
async def test_own_purge_drops_the_remembered_entries_at_once(
    pg_uri: str, tag: str, selector: str
) -> None:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9, hot_entries=100
    ) as cache:
        await serving(cache)
        key = CacheKey(QUESTION, route=f"/a/{tag}", model=f"m-{tag}")
        await cache.put(key, b"100 C", raise_errors=True)
        await remembered(cache, key, b"100 C")
        async with notices_held(pg_uri, cache.table):  # no waiting for the notice
            if selector == "route":
                assert await cache.purge(route=key.route) == 1
            else:
                assert await cache.purge(model=key.model) == 1
            assert await cache.get(key) is None


async def test_purge_by_route_removes_the_redis_copies(
    pg_uri: str, redis_url: str, tag: str
) -> None:
    def cache() -> SemanticCache:
        return SemanticCache(
            pg_uri=pg_uri, redis_uri=redis_url, embedder=HashingEmbedder(64), threshold=0.9
        )

    a = CacheKey(QUESTION, route=f"/a/{tag}")
    b = CacheKey(QUESTION, route=f"/b/{tag}")
    client = redis.Redis.from_url(redis_url)
    try:
        async with cache() as writer:
            await writer.put(a, b"from a", raise_errors=True)
            await writer.put(b, b"from b", raise_errors=True)
            assert len(client.keys(f"semcache:{writer.table}:*")) == 2
            assert await writer.purge(route=f"/a/{tag}") == 1
            values = [client.get(k) for k in client.keys(f"semcache:{writer.table}:*")]
            # The purged row's copy is a tombstone (kind byte "T"), the other one stays.
            assert sorted(v[24:25] for v in values if v is not None) == [b"B", b"T"]
        async with cache() as fresh:  # another process: Redis first, then Postgres
            assert await fresh.get(a) is None
            kept = await fresh.get(b)
            assert kept is not None
            assert kept.response == b"from b"
    finally:
        client.close()


async def test_the_middleware_stores_the_route_and_model_it_keys_on(
    cache: SemanticCache, tag: str
) -> None:
    calls = Calls()
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache)
    x, y = f"x-{tag}", f"y-{tag}"

    async def post(path: str, model: str) -> str:
        async with client_for(mw) as client:
            response = await client.post(path, json=chat_body(model, QUESTION))
        await mw.drain()
        return response.headers["x-cache"]

    for path, model in [("/v1/chat/completions", x), ("/raw", x), ("/v1/chat/completions", y)]:
        assert await post(path, model) == "MISS"
        assert await post(path, model) == "HIT"
    # The default route key: scheme://host/path?query.
    assert await cache.purge(route="http://test/v1/chat/completions", model=x) == 1
    assert await post("/v1/chat/completions", x) == "MISS"
    assert await post("/raw", x) == "HIT"
    assert await post("/v1/chat/completions", y) == "HIT"
    assert await cache.purge(model=y) == 1
    assert await post("/v1/chat/completions", y) == "MISS"
    assert await post("/raw", x) == "HIT"
