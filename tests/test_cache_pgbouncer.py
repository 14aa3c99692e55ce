"""The cache behind Debian's PgBouncer (1.18: no protocol-level prepared statements), in
transaction and in session mode, in front of the session's Postgres.

Transaction mode gives each transaction whichever server connection is free: nothing
prepared by name, no session settings, no ``LISTEN``. Its bouncer has two server
connections per database, fewer than the clients these tests open, and resets each one
after every transaction, so a statement prepared by name never survives to the next.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from semanticcache import (
    CacheKey,
    ConfigurationError,
    HashingEmbedder,
    SemanticCache,
    StorageError,
)
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._middleware.singleflight import SingleFlight
from semanticcache._settings import CacheSettings, PgPooler
from semanticcache._storage import wire
from semanticcache._storage.wire import ReadStatement
from tests.cli.helpers import semcache
from tests.servers import PgBouncer, find_pgbouncer

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"
UNRELATED = "How do I bake sourdough bread?"


@pytest.fixture(params=["transaction", "session"])
def mode(request: pytest.FixtureRequest) -> PgPooler:
    mode: PgPooler = request.param
    return mode


@pytest.fixture
def bouncer(mode: PgPooler, request: pytest.FixtureRequest) -> PgBouncer:
    """The session's bouncer of ``mode`` (started on first use)."""
    fixture = "pgbouncer_transaction" if mode == "transaction" else "pgbouncer_session"
    bouncer: PgBouncer = request.getfixturevalue(fixture)
    return bouncer


@pytest.fixture
def pooled_uri(bouncer: PgBouncer, pg_uri: str) -> str:
    """The module's database through the bouncer."""
    return bouncer.uri_for(pg_uri)


@pytest.fixture
async def cache(
    pooled_uri: str, mode: PgPooler, hashing_cls: type[HashingEmbedder]
) -> AsyncIterator[SemanticCache]:
    async with SemanticCache(
        pg_uri=pooled_uri,
        embedder=hashing_cls(),
        threshold=0.9,
        pool_max_size=4,
        store_timeout=5.0,
        settings=pooler(mode),
    ) as c:
        yield c


def pooler(mode: PgPooler, **more: Any) -> CacheSettings:
    """``pg_pooler`` has no ``SemanticCache`` keyword of its own: settings with it."""
    return CacheSettings(pg_pooler=mode, **more)


@pytest.fixture
def partition() -> bytes:
    return secrets.token_bytes(32)


async def test_core_behaviour_through_the_bouncer(cache: SemanticCache, partition: bytes) -> None:
    """put, exact hit, semantic hit, miss, delete, purge and stats: on both lookup paths
    (one statement, or the exact probe then the search), the wire reads repeated past
    the point where a named statement would be prepared (psycopg's is the fifth use)."""
    entry_id = await cache.put(PROMPT, b"paris", partition=partition)
    assert entry_id is not None
    for _ in range(8):
        exact = await cache.lookup(PROMPT, partition=partition)
        assert exact.reason == "hit"
        assert exact.hit is not None
        assert (exact.hit.match, exact.hit.response, exact.hit.entry_id) == (
            "exact",
            b"paris",
            entry_id,
        )
        semantic = await cache.lookup(REWORDED, partition=partition)
        assert semantic.reason == "hit"
        assert semantic.hit is not None
        assert semantic.hit.match == "semantic"
        assert semantic.hit.response == b"paris"
        miss = await cache.lookup(UNRELATED, partition=partition)
        assert miss.reason == "miss"
    stats = await cache.stats()
    assert stats.rows >= 1
    assert stats.hits >= 16
    assert await cache.delete(entry_id)
    assert (await cache.lookup(PROMPT, partition=partition)).reason == "miss"
    await cache.put(PROMPT, b"paris again", partition=partition)
    await cache.put(UNRELATED, b"bread", partition=partition)
    assert await cache.purge(partition=partition) == 2
    for text in (PROMPT, REWORDED, UNRELATED):
        assert (await cache.lookup(text, partition=partition)).reason == "miss"


async def test_many_concurrent_lookups_through_a_small_server_pool(
    pooled_uri: str, mode: PgPooler, bouncer: PgBouncer, partition: bytes
) -> None:
    """Three caches (three processes) of four connections each, 300 lookups at once:
    in transaction mode twelve clients share the bouncer's two server connections."""
    caches = [
        SemanticCache(
            pg_uri=pooled_uri,
            embedder=HashingEmbedder(),
            threshold=0.9,
            pool_max_size=4,
            store_timeout=30.0,
            settings=pooler(mode),
        )
        for _ in range(3)
    ]
    try:
        for c in caches:
            await c.open()
        if mode == "transaction":
            assert bouncer.pool_size < 3 * 4
        texts = [f"question number {i} about the weather" for i in range(10)]
        for text in texts:
            await caches[0].put(text, text.encode(), partition=partition)

        async def look(i: int) -> tuple[str, bytes | None]:
            result = await caches[i % 3].lookup(texts[i % 10], partition=partition)
            return result.reason, None if result.hit is None else result.hit.response

        results = await asyncio.gather(*(look(i) for i in range(300)))
        assert results == [("hit", texts[i % 10].encode()) for i in range(300)]
    finally:
        for c in caches:
            await c.close()


async def test_single_flight_leases_through_the_bouncer(cache: SemanticCache) -> None:
    """Lease rows (no advisory locks, no session state): one leader, the other process
    waits for its release; many rounds, past psycopg's prepare threshold."""
    for round_ in range(8):
        key = CacheKey(text=f"{PROMPT} {round_}", model=secrets.token_hex(4))
        here, other = SingleFlight(cache), SingleFlight(cache, wait_seconds=30)
        lead = await here.acquire(key)
        assert lead.role == "leader"
        waiting = asyncio.create_task(other.acquire(key))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # polls the leader's row
        await here.release(lead)
        assert (await waiting).role == "waited"


# The settings a lookup's read sees, read by a wire statement as the lookup's are run.
_SETTINGS_READ = ReadStatement(
    "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'), "
    "current_setting('enable_sort'), current_setting('statement_timeout')",
    [],
    [wire.load_text] * 4,
)


async def test_search_settings_reach_every_read(
    pooled_uri: str, mode: PgPooler, bouncer: PgBouncer
) -> None:
    """PgBouncer refuses libpq's ``options``: in session mode the settings are set once
    per connection, in transaction mode in each read's own transaction, and there they
    leave nothing behind on the server connections."""
    async with SemanticCache(
        pg_uri=pooled_uri,
        embedder=HashingEmbedder(),
        ef_search=123,
        store_timeout=2.5,
        pool_max_size=2,
        settings=pooler(mode),
    ) as c:
        await c.lookup(PROMPT)  # loads pgvector in a server connection
        assert c.store.iterative_scan
        for _ in range(2 * bouncer.pool_size):
            rows = await c.store._fetch(_SETTINGS_READ, [])
            assert rows == [("123", "relaxed_order", "off", "2500ms")]
    if mode == "transaction":
        # Every server connection of the bouncer, as the next client gets them.
        conns = [
            await psycopg.AsyncConnection.connect(pooled_uri, prepare_threshold=None)
            for _ in range(bouncer.pool_size)
        ]
        try:
            for conn in conns:
                async with conn.transaction():
                    cur = await conn.execute(
                        "SELECT current_setting('enable_sort'), "
                        "current_setting('statement_timeout')"
                    )
                    assert await cur.fetchone() == ("on", "0")
        finally:
            for conn in conns:
                await conn.close()


@pytest.mark.parametrize(
    ("more", "named"),
    [
        ({"hot_entries": 10}, "SEMANTIC_CACHE_HOT_ENTRIES"),
        ({"redis_uri": "redis://127.0.0.1:6379/0"}, "SEMANTIC_CACHE_REDIS_URI"),
    ],
)
def test_listeners_are_refused_in_transaction_mode(more: dict[str, object], named: str) -> None:
    """Their notices would never arrive through a transaction pooler: a start-up error,
    not stale entries."""
    with pytest.raises(ConfigurationError) as caught:
        SemanticCache(
            pg_uri="postgresql://cache@127.0.0.1:6432/cache",
            embedder=HashingEmbedder(),
            settings=pooler("transaction", **more),
        )
    message = str(caught.value)
    assert named in message
    assert "SEMANTIC_CACHE_PG_POOLER=transaction" in message
    with pytest.raises(ConfigurationError):
        SemanticCache(
            pg_uri="postgresql://cache@127.0.0.1:6432/cache",
            embedder=HashingEmbedder(),
            hot_entries=10,
            settings=pooler("transaction"),
        )


async def test_hot_entries_work_in_session_mode(pgbouncer_session: PgBouncer, pg_uri: str) -> None:
    """The listener keeps its server connection: a delete by another process stops the
    entry being served from memory."""
    uri = pgbouncer_session.uri_for(pg_uri)
    partition = secrets.token_bytes(32)
    writer = SemanticCache(
        pg_uri=uri, embedder=HashingEmbedder(), pool_max_size=2, settings=pooler("session")
    )
    reader = SemanticCache(
        pg_uri=uri,
        embedder=HashingEmbedder(),
        pool_max_size=2,
        hot_entries=10,
        settings=pooler("session"),
    )
    async with writer, reader:
        async with asyncio.timeout(10):
            while not reader.hot_serving:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.01)
        entry_id = await writer.put(PROMPT, b"paris", partition=partition)
        assert entry_id is not None
        assert (await reader.lookup(PROMPT, partition=partition)).reason == "hit"
        assert (await reader.lookup(PROMPT, partition=partition)).reason == "hit"
        await writer.delete(entry_id)
        async with asyncio.timeout(10):
            while (await reader.lookup(PROMPT, partition=partition)).reason == "hit":  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def test_a_pooler_left_unconfigured_is_named_at_open(
    pgbouncer_transaction: PgBouncer, pg_uri: str
) -> None:
    """Without ``SEMANTIC_CACHE_PG_POOLER`` the pool's connections carry libpq's
    ``options``, which PgBouncer refuses: ``open`` says what to set, at once."""
    cache = SemanticCache(
        pg_uri=pgbouncer_transaction.uri_for(pg_uri),
        embedder=HashingEmbedder(),
        store_timeout=2.0,
    )
    async with asyncio.timeout(10):
        with pytest.raises(StorageError, match="SEMANTIC_CACHE_PG_POOLER"):
            await cache.open()
    await cache.close()


async def test_a_pooler_that_drops_options_is_named_at_open(
    pg_server: EmbeddedPostgres, pg_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Told to ignore ``options``, PgBouncer lets the connection in without the search
    settings: ``open`` reads one back and says what to set."""
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer(
        tmp_path_factory.mktemp("pgbouncer-ignoring"),
        pg_server.uri,
        pool_mode="transaction",
        pool_size=2,
        extra="ignore_startup_parameters = options\n",
    )
    bouncer.start()
    try:
        cache = SemanticCache(pg_uri=bouncer.uri_for(pg_uri), embedder=HashingEmbedder())
        with pytest.raises(StorageError, match="drops the options parameter") as caught:
            await cache.open()
        assert "SEMANTIC_CACHE_PG_POOLER" in str(caught.value)
        await cache.close()
    finally:
        bouncer.stop()


async def test_stats_and_purge_commands_through_a_transaction_bouncer(
    pgbouncer_transaction: PgBouncer, pg_server: EmbeddedPostgres
) -> None:
    """``semcache stats`` runs the same statements once per cache table: eight tables,
    past psycopg's prepare threshold, on the bouncer's two server connections."""
    name = f"t_pgbouncer_cli_{secrets.token_hex(4)}"
    uri = pg_server.create_database(name)
    try:
        for dimension in range(16, 24):
            async with SemanticCache(pg_uri=uri, embedder=HashingEmbedder(dimension)) as c:
                await c.put(PROMPT, b"paris", raise_errors=True)
        pooled = pgbouncer_transaction.uri_for(uri)
        done = await asyncio.to_thread(semcache, "stats", "--json", "--pg-uri", pooled)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert len(report["tables"]) == 8
        done = await asyncio.to_thread(semcache, "purge", "--all", "--yes", "--pg-uri", pooled)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(": deleted 1") == 8
    finally:
        pg_server.drop_database(name)
