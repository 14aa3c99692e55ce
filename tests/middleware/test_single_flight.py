"""Single-flight: concurrent identical misses make exactly one app call, in one process
and across two uvicorn server processes sharing the Postgres."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from semanticcache._key import CacheKey
from semanticcache._middleware.singleflight import LEASE_TABLE, SingleFlight
from semanticcache.errors import StorageError
from tests.faults import Relay
from tests.middleware.conftest import URL, Calls, chat_body, client_for, make_app
from tests.servers import uvicorn_processes

PROMPT = "How many moons does Jupiter have?"


async def test_concurrent_identical_misses_call_the_app_once(
    cache: SemanticCache, model: str
) -> None:
    calls = Calls()
    release = asyncio.Event()
    called = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        calls.count += 1
        called.set()
        await release.wait()
        body = b'{"answer": "95"}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    mw = SemanticCacheMiddleware(app, cache=cache)
    async with client_for(mw) as client:
        tasks = [
            asyncio.create_task(client.post(URL, json=chat_body(model, PROMPT))) for _ in range(8)
        ]
        await called.wait()
        release.set()
        responses = await asyncio.gather(*tasks)
    assert calls.count == 1
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 7 + ["MISS"]
    assert {r.content for r in responses} == {b'{"answer": "95"}'}


async def test_single_flight_can_be_switched_off(cache: SemanticCache, model: str) -> None:
    calls = Calls()
    mw = SemanticCacheMiddleware(make_app(calls), cache=cache, single_flight=False)
    assert mw.single_flight is None
    async with client_for(mw) as client:
        await client.post(URL, json=chat_body(model, PROMPT))
    assert calls.count == 1


@pytest.fixture
def two_servers(pg_uri: str, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    count = tmp_path / "calls.txt"
    count.touch()
    env = {"SF_PG_URI": pg_uri, "SF_COUNT_FILE": str(count)}
    with uvicorn_processes("tests.middleware.sf_app:app", 2, env) as urls:
        yield urls, count


async def test_single_flight_across_two_server_processes(
    two_servers: tuple[list[str], Path], model: str
) -> None:
    urls, count = two_servers
    body = chat_body(model, PROMPT)
    # Two processes of one service: the clients name one host (the host is in the key).
    host = {"host": "api.example"}
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(urls[i % 2] + URL, json=body, headers=host) for i in range(8))
        )
    assert [r.status_code for r in responses] == [200] * 8
    assert len(count.read_text().splitlines()) == 1
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 7 + ["MISS"]
    assert len({r.content for r in responses}) == 1


async def test_waiters_are_bounded_then_call_the_app(cache: SemanticCache, model: str) -> None:
    calls = Calls()
    release = asyncio.Event()
    called = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        calls.count += 1
        called.set()
        if calls.count == 1:
            await release.wait()  # the leader hangs until the end of the test
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"n": %d}' % calls.count})

    mw = SemanticCacheMiddleware(app, cache=cache, single_flight_wait=0.1)
    async with client_for(mw) as client:
        leader = asyncio.create_task(client.post(URL, json=chat_body(model, PROMPT)))
        await called.wait()
        waiter = await client.post(URL, json=chat_body(model, PROMPT))
        assert waiter.content == b'{"n": 2}'
        assert waiter.headers["x-cache"] == "MISS"
        release.set()
        await leader
    assert calls.count == 2


async def test_a_cancelled_candidate_leaves_no_stale_registration(
    cache: SemanticCache, model: str
) -> None:
    key = CacheKey(text=PROMPT, model=model)
    other_process = SingleFlight(cache)
    held = await other_process.acquire(key)
    assert held.role == "leader"
    here = SingleFlight(cache, wait_seconds=30)
    waiting = asyncio.create_task(here.acquire(key))
    # Yield until the candidate has registered and is polling the other lease.
    while not here._local:  # noqa: ASYNC110 (no event to wait on inside acquire)
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Nothing left behind for the next identical request of this process to wait on.
    assert not here._local
    await other_process.release(held)
    again = await here.acquire(key)
    assert again.role == "waited"  # the released lease is "done": look the cache up


async def test_the_lease_table_is_unlogged(cache: SemanticCache, model: str) -> None:
    """Leases live seconds: no WAL for them (a crash empties the table, which is fine)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"answer": "4"}'})

    mw = SemanticCacheMiddleware(app, cache=cache)
    async with client_for(mw) as client:
        response = await client.post(URL, json=chat_body(model, "How many legs has a cat?"))
    assert response.headers["x-cache"] == "MISS"
    await mw.drain()
    async with cache.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT relpersistence FROM pg_class WHERE relname = 'semcache_leases'"
        )
        assert await cur.fetchone() == ("u",)


async def test_a_lease_left_by_a_failed_release_is_released_once_postgres_is_back(
    pg_uri: str, cache: SemanticCache, model: str
) -> None:
    # The leader's process loses Postgres between its app call and its release: its
    # lease row stays. Once Postgres answers again, another process's identical miss
    # must not wait out the lease (30 s here): the leader releases it as soon as it can.
    key = CacheKey(text=PROMPT, model=model)
    leader = functools.partial(SingleFlight, lease_seconds=30)
    async with released_in_an_outage(pg_uri, key, leader):
        other_process = SingleFlight(cache, lease_seconds=30)
        started = time.monotonic()
        lease = await other_process.acquire(key)
        waited = time.monotonic() - started
        assert lease.role == "waited"  # the released lease is "done": look the cache up
        assert waited < 10, waited  # the lease had 30 s to run


async def test_draining_tries_the_releases_that_failed_at_once(
    pg_uri: str, cache: SemanticCache, model: str
) -> None:
    key = CacheKey(text=PROMPT, model=model)

    async def done() -> bool | None:
        async with cache.store.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT done FROM {LEASE_TABLE} WHERE ident = %s",
                (key.partition + key.text_digest,),
            )
            row = await cur.fetchone()
            return None if row is None else bool(row[0])

    middleware: list[SemanticCacheMiddleware] = []

    def leader(leader_cache: SemanticCache) -> SingleFlight:
        mw = SemanticCacheMiddleware(make_app(Calls()), cache=leader_cache)
        middleware.append(mw)
        assert mw.single_flight is not None
        # No retry before the end of the test: only draining can release it.
        mw.single_flight.retry_interval = 60
        return mw.single_flight

    async with released_in_an_outage(pg_uri, key, leader) as leader_cache:
        assert await done() is False
        await reachable(leader_cache)
        await middleware[0].drain()
        assert await done() is True


@asynccontextmanager
async def released_in_an_outage(
    pg_uri: str, key: CacheKey, leader: Callable[[SemanticCache], SingleFlight]
) -> AsyncIterator[SemanticCache]:
    """The leader process (``leader`` over a cache behind a relay) takes ``key``'s lease
    and fails to release it while Postgres is down; yields its cache, Postgres back."""
    relay = Relay(pg_uri)
    relayed = await relay.start()
    try:
        async with leader_cache_on(relayed) as leader_cache:
            process = leader(leader_cache)
            held = await process.acquire(key)
            assert held.role == "leader"
            relay.down()
            await process.release(held)  # fails: the row stays
            relay.resume()
            yield leader_cache
    finally:
        await relay.close()


async def reachable(cache: SemanticCache) -> None:
    """Once the cache's pool has reconnected (after an outage it backs off a while)."""

    async def ping(conn: Any) -> None:
        await conn.execute("SELECT 1")

    for _ in range(100):
        try:
            await cache.run_on_store(ping)
            return
        except StorageError:
            await asyncio.sleep(0.1)
    raise AssertionError("Postgres did not become reachable again")


def leader_cache_on(uri: str) -> SemanticCache:
    """The leader process's cache, whose breaker stays closed through the test's outage
    (the lease, not the breaker, is under test)."""
    return SemanticCache(
        pg_uri=uri, embedder=HashingEmbedder(), store_timeout=0.5, breaker_failures=1000
    )
