"""Budgets that hold: ``store_timeout`` bounds what a caller waits for Postgres, also
when the server stalls with connections open, for lookups, puts, leases and requests
through the middleware; a Postgres restart costs no request that starts after it.

These tests stall and restart a Postgres of their own, or reach it through a relay
that hangs or cuts connections (``tests/faults.py``), never the session's.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import psycopg
import pytest

from semanticcache import CacheKey, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._middleware.singleflight import SingleFlight
from tests.faults import Relay, own_postgres, stalled
from tests.middleware.conftest import URL, Calls, chat_body, client_for, make_app

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
BUDGET = 0.5
# What a call may take past its budget: the timer's lateness and the return to the
# caller on a loaded 2-core machine. Without the hard bound, a stalled server held a
# call for about ten seconds more.
SLACK = 0.3


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = own_postgres(tmp_path_factory.mktemp("own-pg") / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def within[T](seconds: float, coro: Awaitable[T]) -> T:
    """Liveness bound, so that a hang fails the test instead of stalling it."""
    async with asyncio.timeout(seconds):
        return await coro


async def timed[T](coro: Awaitable[T]) -> tuple[T, float]:
    start = time.monotonic()
    result = await within(30, coro)
    return result, time.monotonic() - start


async def served_again(cache: SemanticCache, key: CacheKey) -> None:
    """Liveness: the cache serves ``key`` again once the server answers."""
    for _ in range(200):
        if (await within(30, cache.lookup(key))).hit is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not served again after the server came back")


async def test_a_stalled_postgres_costs_a_lookup_or_put_its_budget(
    own_pg: EmbeddedPostgres, hashing_cls: type[HashingEmbedder]
) -> None:
    scope = secrets.token_hex(4)
    async with SemanticCache(
        pg_uri=own_pg.uri,
        embedder=hashing_cls(dimension=40),
        threshold=0.9,
        store_timeout=BUDGET,
        breaker_failures=100,  # every call reaches the stalled server
        pool_max_size=2,
    ) as cache:
        key = CacheKey(PROMPT, scope=scope)
        await cache.put(key, b"paris")
        assert (await cache.lookup(key)).reason == "hit"
        with stalled(own_pg):
            # The first on an open connection; the later ones wait for a connection
            # (the pool's two are held by the calls given up) or for a new one.
            for _ in range(4):
                result, elapsed = await timed(cache.lookup(CacheKey(REWORDED, scope=scope)))
                assert result.hit is None
                assert result.reason in ("store_timeout", "store_error")
                assert elapsed < BUDGET + SLACK
            stored, elapsed = await timed(cache.put(CacheKey("other", scope=scope), b"x"))
            assert stored is None
            assert elapsed < BUDGET + SLACK
        await served_again(cache, key)


async def test_a_request_through_the_middleware_gets_the_app_answer_within_the_budget(
    own_pg: EmbeddedPostgres,
) -> None:
    calls = Calls()
    model = f"m-{secrets.token_hex(4)}"
    async with SemanticCache(
        pg_uri=own_pg.uri,
        embedder=HashingEmbedder(dimension=48),
        store_timeout=BUDGET,
        breaker_failures=100,
    ) as cache:
        mw = SemanticCacheMiddleware(make_app(calls), cache=cache)
        async with client_for(mw) as client:
            first = await client.post(URL, json=chat_body(model, PROMPT))
            assert first.headers["x-cache"] == "MISS"
            await mw.drain()
            with stalled(own_pg):
                for n in range(2):
                    response, elapsed = await timed(
                        client.post(URL, json=chat_body(model, f"{REWORDED} {n}"))
                    )
                    assert response.status_code == 200
                    assert response.json()["choices"][0]["message"]["content"] == f"answer {n + 2}"
                    assert elapsed < BUDGET + SLACK
            for _ in range(200):  # liveness: served again once the server answers
                again = await within(30, client.post(URL, json=chat_body(model, PROMPT)))
                if again.headers["x-cache"] == "HIT":
                    break
                await asyncio.sleep(0.1)
            assert again.headers["x-cache"] == "HIT"


async def test_single_flight_leases_are_bounded_by_the_budget_and_the_breaker(
    own_pg: EmbeddedPostgres,
) -> None:
    async with SemanticCache(
        pg_uri=own_pg.uri,
        embedder=HashingEmbedder(dimension=56),
        store_timeout=BUDGET,
        breaker_failures=2,
        breaker_cooldown=60,
    ) as cache:
        flight = SingleFlight(cache)
        warm = await flight.acquire(CacheKey(secrets.token_hex(8)))
        assert warm.role == "leader"
        await flight.release(warm)  # the lease table exists
        with stalled(own_pg):
            lease, elapsed = await timed(flight.acquire(CacheKey(secrets.token_hex(8))))
            # Fails open: the request leads (calls the app) without a lease.
            assert lease.role == "leader"
            assert elapsed < BUDGET + SLACK
            _, elapsed = await timed(flight.release(lease))
            assert elapsed < BUDGET + SLACK
            # Two lease timeouts opened the store's breaker: no wait at all now.
            lease, elapsed = await timed(flight.acquire(CacheKey(secrets.token_hex(8))))
            assert lease.role == "leader"
            assert elapsed < 0.1
            assert (await cache.lookup(PROMPT)).reason == "breaker_open"


async def test_a_restart_costs_no_later_request(own_pg: EmbeddedPostgres) -> None:
    scope = secrets.token_hex(4)
    async with SemanticCache(
        pg_uri=own_pg.uri,
        embedder=HashingEmbedder(dimension=64),
        threshold=0.9,
        store_timeout=5,
        breaker_failures=2,
        breaker_cooldown=60,
        pool_min_size=4,
        pool_max_size=4,
    ) as cache:
        key = CacheKey(PROMPT, scope=scope)
        await cache.put(key, b"paris")
        await cache.store.pool.wait(timeout=30)  # four idle connections
        await asyncio.to_thread(own_pg.stop)
        await asyncio.to_thread(own_pg.start)  # same folder, same port
        # The restart closed every idle connection: none is handed out, none fails a
        # lookup, and the breaker stays closed.
        reasons = [(await within(30, cache.lookup(key))).reason for _ in range(6)]
        assert reasons == ["hit"] * 6
        semantic = await cache.lookup(CacheKey(REWORDED, scope=scope))
        assert semantic.reason == "hit"


async def test_a_query_whose_connection_is_closed_under_it_runs_again(
    own_pg: EmbeddedPostgres,
) -> None:
    scope = secrets.token_hex(4)
    async with SemanticCache(
        pg_uri=own_pg.uri,
        embedder=HashingEmbedder(dimension=72),
        threshold=0.9,
        store_timeout=10,
    ) as cache:
        key = CacheKey(PROMPT, scope=scope)
        await cache.put(key, b"paris")
        async with await psycopg.AsyncConnection.connect(own_pg.uri) as locker:
            await locker.execute(f"LOCK TABLE {cache.table} IN ACCESS EXCLUSIVE MODE")
            lookup = asyncio.create_task(cache.lookup(key))
            blocked: list[Any] = []
            for _ in range(500):
                cursor = await locker.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND pid <> pg_backend_pid()"
                )
                blocked = await cursor.fetchall()
                if blocked:
                    break
                await asyncio.sleep(0.01)
            assert len(blocked) == 1
            # The lookup's session is ended under it (as by a shutdown: 57P01).
            await locker.execute("SELECT pg_terminate_backend(%s)", (blocked[0][0],))
            await asyncio.sleep(0.2)
            await locker.rollback()
            result = await within(30, lookup)
        assert result.reason == "hit"


async def test_a_hung_network_costs_a_lookup_or_put_its_budget(own_pg: EmbeddedPostgres) -> None:
    relay = Relay(own_pg.uri)
    scope = secrets.token_hex(4)
    try:
        async with SemanticCache(
            pg_uri=await relay.start(),
            embedder=HashingEmbedder(dimension=80),
            threshold=0.9,
            store_timeout=BUDGET,
            breaker_failures=100,
        ) as cache:
            key = CacheKey(PROMPT, scope=scope)
            await cache.put(key, b"paris")
            relay.hang()  # nothing gets through; the cancel request would not either
            result, elapsed = await timed(cache.lookup(CacheKey(REWORDED, scope=scope)))
            assert (result.hit, result.reason) == (None, "store_timeout")
            assert elapsed < BUDGET + SLACK
            stored, elapsed = await timed(cache.put(CacheKey("other", scope=scope), b"x"))
            assert stored is None
            assert elapsed < BUDGET + SLACK
            relay.resume()
            await served_again(cache, key)
    finally:
        await relay.close()


async def test_connections_cut_while_idle_cost_no_later_request(
    own_pg: EmbeddedPostgres,
) -> None:
    relay = Relay(own_pg.uri)
    scope = secrets.token_hex(4)
    try:
        async with SemanticCache(
            pg_uri=await relay.start(),
            embedder=HashingEmbedder(dimension=88),
            threshold=0.9,
            store_timeout=5,
            breaker_failures=2,
            breaker_cooldown=60,
            pool_min_size=3,
            pool_max_size=3,
        ) as cache:
            key = CacheKey(PROMPT, scope=scope)
            await cache.put(key, b"paris")
            await cache.store.pool.wait(timeout=30)
            relay.cut()  # as a proxy's idle timeout or a network failure would
            await asyncio.sleep(0.05)  # the resets arrive
            reasons = [(await within(30, cache.lookup(key))).reason for _ in range(5)]
            assert reasons == ["hit"] * 5
    finally:
        await relay.close()
