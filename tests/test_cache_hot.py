"""Hot entries: exact hits from memory, invalidated through Postgres triggers + LISTEN.

Two caches on the same table stand for two processes. "Served from memory" is shown by
changing a row with the triggers disabled (no notice): a cache that still answers the old
response did not ask Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from semanticcache import CacheKey, HashingEmbedder, SemanticCache
from semanticcache._storage.hot import HotEntries, HotEntry

QUESTION = "What is the boiling point of water at sea level?"


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Liveness bound, not a timing assertion: notices arrive within milliseconds."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


async def serving(cache: SemanticCache) -> None:
    async def ready() -> bool:
        return cache.hot_serving

    await eventually(ready)


@pytest.fixture
def scope() -> str:
    return secrets.token_hex(6)


@pytest.fixture
async def pair(
    pg_uri: str, hashing_cls: type[HashingEmbedder]
) -> AsyncIterator[tuple[SemanticCache, SemanticCache]]:
    """Writer and reader: two caches (two processes) on the same table, both hot; on
    both lookup paths (the exact row comes from the probe or from the lookup function)."""
    embedder = hashing_cls(64)
    writer = SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9, hot_entries=100)
    reader = SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9, hot_entries=100)
    async with writer, reader:
        await serving(writer)
        await serving(reader)
        yield writer, reader


async def change_silently(pg_uri: str, table: str, entry_id: int, response: bytes) -> None:
    """Rewrite a row's response without any notice (triggers off for the statement)."""
    async with await psycopg.AsyncConnection.connect(pg_uri) as conn, conn.transaction():
        await conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        await conn.execute(
            f'UPDATE "{table}" SET response = %s WHERE id = %s', (response, entry_id)
        )
        await conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')


async def remembered(cache: SemanticCache, key: CacheKey, response: bytes) -> int:
    """Look ``key`` up until it is an exact hit; return its id (now held in memory)."""
    hit = await cache.get(key)
    assert hit is not None
    assert (hit.match, hit.response) == ("exact", response)
    return hit.entry_id


async def test_an_exact_repeat_is_served_from_memory(
    pg_uri: str, pair: tuple[SemanticCache, SemanticCache], scope: str
) -> None:
    writer, reader = pair
    key = CacheKey(QUESTION, scope=scope)
    await writer.put(key, b"100 C")
    entry_id = await remembered(reader, key, b"100 C")
    await change_silently(pg_uri, reader.table, entry_id, b"changed without a notice")
    hit = await reader.get(key)
    assert hit is not None
    assert (hit.response, hit.entry_id, hit.similarity) == (b"100 C", entry_id, 1.0)
    # A cache without hot entries asks Postgres every time.
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9) as cold:
        fresh = await cold.get(key)
        assert fresh is not None
        assert fresh.response == b"changed without a notice"


@pytest.mark.parametrize("change", ["delete", "replace", "purge_scope", "purge_all", "raw_sql"])
async def test_changes_in_another_process_reach_the_memory(
    pg_uri: str, pair: tuple[SemanticCache, SemanticCache], scope: str, change: str
) -> None:
    writer, reader = pair
    key = CacheKey(QUESTION, scope=scope)
    await writer.put(key, b"100 C")
    entry_id = await remembered(reader, key, b"100 C")
    if change == "delete":
        assert await writer.delete(entry_id)
    elif change == "replace":
        await writer.put(key, b"212 F")
    elif change == "purge_scope":
        assert await writer.purge(scope=scope) == 1
    elif change == "purge_all":
        assert await writer.purge(all=True) >= 1
    else:
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
            await conn.execute(f'DELETE FROM "{writer.table}" WHERE id = %s', (entry_id,))
    expected = b"212 F" if change == "replace" else None

    async def updated() -> bool:
        hit = await reader.get(key)
        return (hit.response if hit is not None else None) == expected

    await eventually(updated)


async def test_hit_counts_do_not_invalidate(
    pair: tuple[SemanticCache, SemanticCache], scope: str, pg_uri: str
) -> None:
    writer, reader = pair
    key = CacheKey(QUESTION, scope=scope)
    await writer.put(key, b"100 C")
    entry_id = await remembered(reader, key, b"100 C")
    await reader.flush_hits()
    await writer.flush_hits()
    # Still in memory after the hit-count update: the silent change is not seen.
    await change_silently(pg_uri, reader.table, entry_id, b"changed")
    hit = await reader.get(key)
    assert hit is not None
    assert hit.response == b"100 C"


async def test_own_put_replaces_the_remembered_entry_at_once(
    pair: tuple[SemanticCache, SemanticCache], scope: str
) -> None:
    writer, _reader = pair
    key = CacheKey(QUESTION, scope=scope)
    await writer.put(key, b"100 C")
    await remembered(writer, key, b"100 C")
    await writer.put(key, b"212 F")
    hit = await writer.get(key)  # no wait for the notice
    assert hit is not None
    assert hit.response == b"212 F"


async def test_expired_entries_are_never_served_from_memory(pg_uri: str, scope: str) -> None:
    key = CacheKey(QUESTION, scope=scope)
    async with SemanticCache(
        pg_uri=pg_uri,
        embedder=HashingEmbedder(64),
        threshold=0.9,
        hot_entries=10,
        ttl_days=1.0 / 86400,  # one second
    ) as c:
        await serving(c)
        await c.put(key, b"short-lived")
        await remembered(c, key, b"short-lived")
        await asyncio.sleep(1.1)
        assert await c.get(key) is None


async def test_a_lost_listener_stops_serving_from_memory_then_recovers(
    pg_uri: str, pair: tuple[SemanticCache, SemanticCache], scope: str
) -> None:
    writer, reader = pair
    key = CacheKey(QUESTION, scope=scope)
    await writer.put(key, b"100 C")
    entry_id = await remembered(reader, key, b"100 C")
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        )
        assert len(await cur.fetchall()) >= 2  # both caches' listeners

        async def paused() -> bool:
            return not reader.hot_serving

        await eventually(paused)
        # Notices may be missed now: the memory was dropped, Postgres answers.
        await change_silently(pg_uri, reader.table, entry_id, b"changed while deaf")
        hit = await reader.get(key)
        assert hit is not None
        assert hit.response == b"changed while deaf"
    await serving(reader)  # reconnected by itself
    await remembered(reader, key, b"changed while deaf")
    await change_silently(pg_uri, reader.table, entry_id, b"silent again")
    hit = await reader.get(key)
    assert hit is not None
    assert hit.response == b"changed while deaf"


def _entry(entry_id: int, size: int = 10) -> HotEntry:
    now = datetime.now(UTC)
    return HotEntry(entry_id, b"x" * size, now, now + timedelta(hours=1))


class TestHotEntriesUnit:
    """The in-memory part alone (the listener is marked connected by hand)."""

    def make(self, entries: int = 3, max_bytes: int = 1000) -> HotEntries:
        hot = HotEntries("t", max_entries=entries, max_bytes=max_bytes)
        hot._listening = True
        return hot

    def test_a_notice_between_read_and_remember_wins(self) -> None:
        hot = self.make()
        generation = hot.generation
        hot.forget_id(7)  # the notice for the row being read
        hot.remember(b"k", _entry(7), generation)
        assert hot.get(b"k") is None
        hot.remember(b"k", _entry(7), hot.generation)
        assert hot.get(b"k") is not None

    def test_bounded_by_count_and_bytes_least_recent_first(self) -> None:
        hot = self.make(entries=2, max_bytes=25)
        for i, key in enumerate((b"a", b"b")):
            hot.remember(key, _entry(i), hot.generation)
        assert hot.get(b"a") is not None  # a is now the most recent
        hot.remember(b"c", _entry(3), hot.generation)
        assert [k for k in (b"a", b"b", b"c") if hot.get(k) is not None] == [b"a", b"c"]
        hot.remember(b"d", _entry(4, size=20), hot.generation)  # 10 + 20 > 25 bytes
        assert [k for k in (b"a", b"c", b"d") if hot.get(k) is not None] == [b"d"]

    def test_nothing_served_or_kept_without_the_listener(self) -> None:
        hot = self.make()
        hot.remember(b"k", _entry(1), hot.generation)
        hot._listening = False
        assert hot.get(b"k") is None
        hot.remember(b"j", _entry(2), hot.generation)
        hot._listening = True
        assert hot.get(b"j") is None
        assert hot.get(b"k") is not None

    def test_forget_by_id_and_key(self) -> None:
        hot = self.make()
        hot.remember(b"a", _entry(1), hot.generation)
        hot.remember(b"b", _entry(2), hot.generation)
        hot.forget_id(1)
        hot.forget(b"b")
        assert len(hot) == 0


async def test_a_second_start_keeps_the_triggers(pg_uri: str) -> None:
    """Re-creating a trigger locks the table against every lookup: a process starting
    on an existing table must leave them as they are."""

    async def trigger_oids(c: SemanticCache) -> list[tuple[object, ...]]:
        async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
            cur = await conn.execute(
                "SELECT tgname, oid FROM pg_trigger WHERE tgrelid = %s::regclass ORDER BY tgname",
                (c.table,),
            )
            return await cur.fetchall()

    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(64)) as first:
        before = await trigger_oids(first)
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(64)) as second:
        assert await trigger_oids(second) == before
    assert [name for name, _ in before] == ["semcache_changed", "semcache_deleted"]


@contextlib.asynccontextmanager
async def notices_held(pg_uri: str, table: str) -> AsyncIterator[None]:
    """No notice reaches the listeners of ``table`` meanwhile: their Postgres backends
    (only theirs, found by the statement they wait in) are stopped, then resumed."""
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            (f'LISTEN "{table}"',),
        )
        pids = [int(row[0]) for row in await cur.fetchall()]
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("change", ["delete", "delete_scoped", "report_wrong", "purge"])
async def test_own_delete_drops_the_remembered_entry_at_once(
    pg_uri: str, scope: str, change: str
) -> None:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(64), threshold=0.9, hot_entries=100
    ) as cache:
        await serving(cache)
        key = CacheKey(QUESTION, scope=scope)
        await cache.put(key, b"100 C")
        entry_id = await remembered(cache, key, b"100 C")
        async with notices_held(pg_uri, cache.table):  # no waiting for the notice
            if change == "delete":
                assert await cache.delete(entry_id)
            elif change == "delete_scoped":
                assert await cache.delete(entry_id, scope=scope)
            elif change == "report_wrong":
                assert await cache.report_wrong_id(entry_id, scope=scope)
            else:
                assert await cache.purge(scope=scope) == 1
            assert await cache.get(key) is None
