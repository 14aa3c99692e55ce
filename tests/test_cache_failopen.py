"""Fail-open: timeouts, errors and circuit breakers make misses with a reason, never
exceptions out of get; a stopped Postgres is survived and recovered from."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from semanticcache import (
    BaseEmbedder,
    CacheKey,
    EmbedderError,
    HashingEmbedder,
    SemanticCache,
    StorageError,
)
from semanticcache._devserver import EmbeddedPostgres
from tests.servers import free_port

PROMPT = "What is the capital of France?"
REWORDED = "what is the capital of France, please"


class FlakyEmbedder(BaseEmbedder):
    """The hashing embedder, until told to hang, fail or answer garbage."""

    def __init__(self, dimension: int = 64) -> None:
        self._inner = HashingEmbedder(dimension)
        self.model_id = f"flaky-{dimension}"
        self.dimension = dimension
        self.mode = "ok"
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "fail":
            raise RuntimeError("provider unavailable")
        if self.mode == "nan":
            return [[math.nan] * self.dimension for _ in texts]
        if self.mode == "short":
            return [[1.0] * (self.dimension - 1) for _ in texts]
        if self.mode == "huge":
            return [[1e39] * self.dimension for _ in texts]
        if self.mode == "zero":
            return [[0.0] * self.dimension for _ in texts]
        if self.mode == "strings":
            return [["x"] * self.dimension for _ in texts]  # type: ignore[list-item]
        if self.mode == "scalar":
            return 3.0  # type: ignore[return-value]
        if self.mode == "tuple":
            return (tuple([0.5] * self.dimension),)  # type: ignore[return-value]
        if self.mode == "many":
            return [[1.0] * self.dimension for _ in range(len(texts) + 1)]
        return await self._inner.embed(texts)


class CheapFlakyEmbedder(FlakyEmbedder):
    """The same, declared cheap: the cache embeds before the exact probe."""

    embeds_cheaply: ClassVar[bool] = True


both_paths = pytest.mark.parametrize(
    "flaky_cls", [FlakyEmbedder, CheapFlakyEmbedder], ids=["exact_first", "embed_first"]
)


async def within[T](seconds: float, coro: Awaitable[T]) -> T:
    """Liveness bound: a generous ceiling (many times the configured timeout) so that a
    hang fails the test instead of stalling it; not a timing assertion."""
    async with asyncio.timeout(seconds):
        return await coro


@both_paths
async def test_slow_embedder_times_out_trips_the_breaker_and_recovers(
    pg_uri: str, flaky_cls: type[FlakyEmbedder]
) -> None:
    embedder = flaky_cls()
    scope = secrets.token_hex(4)
    async with SemanticCache(
        pg_uri=pg_uri,
        embedder=embedder,
        threshold=0.9,
        embed_timeout=0.05,
        breaker_failures=2,
        breaker_cooldown=0.3,
    ) as c:
        await c.put(CacheKey(PROMPT, scope=scope), b"paris")
        embedder.mode = "slow"
        for _ in range(2):
            result = await within(10, c.lookup(CacheKey(REWORDED, scope=scope)))
            assert result.reason == "embed_timeout"
        calls = embedder.calls
        skipped = await c.lookup(CacheKey(REWORDED, scope=scope))
        assert (skipped.hit, skipped.reason) == (None, "breaker_open")
        assert embedder.calls == calls  # an open breaker does not call the embedder
        # the exact path needs no embedder: still served
        exact = await c.lookup(CacheKey(PROMPT, scope=scope))
        assert exact.reason == "hit"
        # put while the breaker is open: not stored, no exception
        assert await c.put(CacheKey("another question", scope=scope), b"x") is None
        with pytest.raises(EmbedderError, match="breaker_open"):
            await c.put(CacheKey("another question", scope=scope), b"x", raise_errors=True)
        embedder.mode = "ok"
        await asyncio.sleep(0.35)  # the cool-down (not a timing assertion)
        recovered = await c.lookup(CacheKey(REWORDED, scope=scope))
        assert recovered.reason == "hit"
        assert (await c.stats()).lookups["breaker_open"] == 1


async def test_embed_timeout_reason(pg_uri: str) -> None:
    embedder = FlakyEmbedder(dimension=72)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, embed_timeout=0.05) as c:
        embedder.mode = "slow"
        result = await within(10, c.lookup("some question"))
        assert (result.hit, result.reason) == (None, "embed_timeout")
        assert await within(10, c.put("some question", b"x")) is None
        with pytest.raises(EmbedderError, match="embed_timeout"):
            await within(10, c.put("some question", b"x", raise_errors=True))


@both_paths
async def test_failing_embedder_is_a_miss_and_put_is_swallowed(
    pg_uri: str, caplog: pytest.LogCaptureFixture, flaky_cls: type[FlakyEmbedder]
) -> None:
    embedder = flaky_cls(dimension=80)
    secret_prompt = f"my secret prompt {secrets.token_hex(8)}"
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder) as c:
        embedder.mode = "fail"
        result = await c.lookup(secret_prompt)
        assert (result.hit, result.reason) == (None, "embed_error")
        assert await c.put(secret_prompt, b"x") is None
    assert "embed_error (RuntimeError)" in caplog.text
    assert secret_prompt not in caplog.text  # logs never carry the prompt


async def test_raise_errors_on_the_constructor(pg_uri: str) -> None:
    embedder = FlakyEmbedder(dimension=88)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, raise_errors=True) as c:
        embedder.mode = "fail"
        with pytest.raises(EmbedderError, match="embed_error") as info:
            await c.put("q", b"x")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert await c.put("q", b"x", raise_errors=False) is None
        assert (await c.lookup("q")).reason == "embed_error"  # get never raises


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("nan", "NaN or infinite"),
        ("short", "dimension 95; expected 96"),
        ("zero", "zero vector"),
        ("huge", "beyond float32 range"),
        ("many", "2 vectors for 1 text"),
        ("strings", "not a list of numbers"),
        ("scalar", "not a list of vectors"),
    ],
)
@both_paths
async def test_bad_vectors_raise_on_put_and_miss_on_get(
    pg_uri: str, mode: str, message: str, flaky_cls: type[FlakyEmbedder]
) -> None:
    embedder = flaky_cls(dimension=96)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder) as c:
        embedder.mode = mode
        with pytest.raises(EmbedderError, match=message):
            await c.put("q", b"x")  # even without raise_errors: a misconfigured embedder
        result = await c.lookup("q")
        assert (result.hit, result.reason) == (None, "embed_error")


@both_paths
async def test_a_failing_embedder_still_serves_exact_repeats(
    pg_uri: str, flaky_cls: type[FlakyEmbedder]
) -> None:
    embedder = flaky_cls(dimension=112)
    scope = secrets.token_hex(4)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9) as c:
        await c.put(CacheKey(PROMPT, scope=scope), b"paris")
        for mode in ("fail", "nan"):
            embedder.mode = mode
            exact = await c.lookup(CacheKey(PROMPT, scope=scope))
            assert exact.hit is not None
            assert (exact.reason, exact.hit.match, exact.hit.response) == ("hit", "exact", b"paris")
            semantic = await c.lookup(CacheKey(REWORDED, scope=scope))
            assert (semantic.hit, semantic.reason) == (None, "embed_error")


async def test_any_sequence_of_numbers_is_a_vector(pg_uri: str) -> None:
    embedder = FlakyEmbedder(dimension=96)
    embedder.mode = "tuple"
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder) as c:
        assert await c.put("tuples", b"x") is not None
        hit = await c.get("tuples")
        assert hit is not None


async def test_a_blocked_query_is_a_store_timeout(pg_uri: str) -> None:
    scope = secrets.token_hex(4)
    async with SemanticCache(
        pg_uri=pg_uri, embedder=HashingEmbedder(dimension=104), store_timeout=0.3
    ) as c:
        await c.put(CacheKey(PROMPT, scope=scope), b"paris")
        async with await psycopg.AsyncConnection.connect(pg_uri) as locker:
            # An open transaction holding the table's strongest lock blocks every read.
            await locker.execute(f"LOCK TABLE {c.table} IN ACCESS EXCLUSIVE MODE")
            result = await within(10, c.lookup(CacheKey(PROMPT, scope=scope)))
            assert (result.hit, result.reason) == (None, "store_timeout")
            assert await within(10, c.put(CacheKey("other", scope=scope), b"x")) is None
            await locker.rollback()
        hit = await c.get(CacheKey(PROMPT, scope=scope))
        assert hit is not None
        assert hit.response == b"paris"


async def test_stopped_postgres_fails_open_and_recovers(
    tmp_path: Path, hashing_cls: type[HashingEmbedder]
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    uri = await asyncio.to_thread(server.start)
    try:
        cache = SemanticCache(
            pg_uri=uri,
            embedder=hashing_cls(),
            threshold=0.9,
            store_timeout=0.5,
            breaker_failures=2,
            breaker_cooldown=0.2,
            connect_timeout=2,
        )
        async with cache:
            await cache.put(PROMPT, b"paris")
            assert await cache.get(PROMPT) is not None
            await asyncio.to_thread(server.stop)
            reasons = []
            for text in (PROMPT, REWORDED, PROMPT, REWORDED):
                result = await within(20, cache.lookup(text))
                assert result.hit is None
                reasons.append(result.reason)
            assert set(reasons) <= {"store_error", "store_timeout", "breaker_open"}
            assert "breaker_open" in reasons
            assert await within(20, cache.put("during the outage", b"x")) is None
            with pytest.raises(StorageError):
                await within(20, cache.put("during the outage", b"x", raise_errors=True))

            await asyncio.to_thread(server.start)  # same data folder, same port
            hit = None
            for _ in range(300):  # liveness bound while the pool reconnects
                hit = await within(20, cache.get(REWORDED))
                if hit is not None:
                    break
                await asyncio.sleep(0.1)
            assert hit is not None
            assert hit.response == b"paris"
            assert await cache.put("after the outage", b"y") is not None
    finally:
        await asyncio.to_thread(server.stop)
