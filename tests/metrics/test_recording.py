"""What one process records (deltas on the default registry, which every cache of the
process shares): outcomes by route template, bypass reasons, dependency failures and the
breaker gauge, single-flight waits, upstream time saved; and nothing at all, not even the
import, with metrics off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from psycopg import sql

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache, SemanticCacheMiddleware
from tests.middleware.conftest import chat_body, client_for

ROOT = Path(__file__).resolve().parents[2]
LOOKUPS = "semcache_lookups_total"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of some samples since the block started."""

    def __init__(self, *keys: tuple[str, dict[str, str]]) -> None:
        self.keys = keys
        self.before = [sample(n, **labels) for n, labels in keys]

    def __call__(self) -> list[float]:
        return [
            sample(n, **labels) - b for (n, labels), b in zip(self.keys, self.before, strict=True)
        ]


@pytest.fixture
async def cache(pg_uri: str) -> AsyncIterator[SemanticCache]:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, metrics=True)
    async with SemanticCache(settings=settings, embedder=HashingEmbedder()) as c:
        yield c


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return "m-" + name[:40]


async def _rows(cache: SemanticCache) -> int:
    async def count(conn: psycopg.AsyncConnection[Any]) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(cache.table))
        row = await (await conn.execute(query)).fetchone()
        return 0 if row is None else int(row[0])

    return await cache.run_on_store(count)


async def _wait_rows(cache: SemanticCache, count: int) -> None:
    # Stores run after the response: wait for them before asking for hits.
    for _ in range(200):
        if await _rows(cache) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} entries never stored")


def _app(cache: SemanticCache, delay: float = 0.0, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SemanticCacheMiddleware, cache=cache, **options)

    @app.post("/items/{item_id}")
    async def item(item_id: int, request: Request) -> Response:
        await asyncio.sleep(delay)
        return JSONResponse({"item": item_id, "n": len(await request.body())})

    return app


async def test_lookups_count_under_the_route_template(cache: SemanticCache, model: str) -> None:
    route = {"route": "/items/{item_id}"}
    delta = Delta(
        (LOOKUPS, {"outcome": "miss", **route}),
        (LOOKUPS, {"outcome": "exact_hit", **route}),
        ("semcache_bypasses_total", {"reason": "authorization", **route}),
        ("semcache_bypasses_total", {"reason": "no_query", **route}),
        ("semcache_upstream_calls_total", route),
    )
    stored = await _rows(cache)
    async with client_for(_app(cache)) as client:
        # Two paths, one template: the path's number never becomes a label.
        for item in (1, 2):
            got = await client.post(f"/items/{item}", json=chat_body(model, f"item {item}"))
            assert got.headers["x-cache"] == "MISS"
        await _wait_rows(cache, stored + 2)
        for item in (1, 2):
            got = await client.post(f"/items/{item}", json=chat_body(model, f"item {item}"))
            assert got.headers["x-cache"] == "HIT"
        await client.post("/items/3", json=chat_body(model, "x"), headers={"authorization": "a"})
        await client.post("/items/3", json={"no": "messages"})
    assert delta() == [2, 2, 1, 1, 2]
    assert sample(LOOKUPS, outcome="miss", route="/items/1") == 0


async def test_an_extractor_error_counts_without_its_exception_type(
    cache: SemanticCache, model: str
) -> None:
    def broken(request: Request, body: bytes) -> str:
        raise KeyError("tenant")

    route = {"route": "/items/{item_id}"}
    delta = Delta(("semcache_bypasses_total", {"reason": "extractor_error", **route}))
    async with client_for(_app(cache, extract_scope=broken)) as client:
        got = await client.post("/items/1", json=chat_body(model, "x"))
    assert got.headers["x-cache"] == "BYPASS"
    assert delta() == [1]


async def test_a_dead_postgres_counts_its_reason_and_opens_the_breaker_gauge() -> None:
    settings = CacheSettings(
        pg_uri="postgresql://nobody@127.0.0.1:1/none",
        metrics=True,
        breaker_failures=1,
        breaker_cooldown_seconds=60,
    )
    cache = SemanticCache(settings=settings, embedder=HashingEmbedder(), connect_timeout=2)
    # A new cache starts its breakers closed.
    assert sample("semcache_breaker_state", dependency="postgres") == 0
    route = {"route": "-"}  # a direct lookup, outside the middleware
    delta = Delta(
        (LOOKUPS, {"outcome": "store_error", **route}),
        (LOOKUPS, {"outcome": "breaker_open", **route}),
    )
    try:
        first = await cache.lookup("anything")
        second = await cache.lookup("anything")
    finally:
        await cache.close()
    assert (first.reason, second.reason) == ("store_error", "breaker_open")
    assert delta() == [1, 1]
    assert sample("semcache_breaker_state", dependency="postgres") == 2


async def test_single_flight_waits_are_timed(cache: SemanticCache, model: str) -> None:
    route = {"route": "/items/{item_id}"}
    delta = Delta(
        ("semcache_single_flight_wait_seconds_count", route),
        ("semcache_upstream_calls_total", route),
    )
    async with client_for(_app(cache, delay=0.3)) as client:
        responses = await asyncio.gather(
            *(client.post("/items/1", json=chat_body(model, "same question")) for _ in range(4))
        )
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 3 + ["MISS"]
    assert delta() == [3, 1]
    assert sample("semcache_single_flight_wait_seconds_sum", **route) > 0


async def test_a_served_hit_saves_the_routes_mean_upstream_time(
    cache: SemanticCache, model: str
) -> None:
    app = FastAPI()
    app.add_middleware(SemanticCacheMiddleware, cache=cache)

    @app.post("/slow")
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.2)
        return JSONResponse({"n": len(await request.body())})

    saved = Delta(("semcache_upstream_seconds_saved_total", {"route": "/slow"}))
    stored = await _rows(cache)
    async with client_for(app) as client:
        await client.post("/slow", json=chat_body(model, "slow one"))
        assert saved() == [0]
        await _wait_rows(cache, stored + 1)
        for _ in range(2):
            hit = await client.post("/slow", json=chat_body(model, "slow one"))
            assert hit.headers["x-cache"] == "HIT"
    (seconds,) = saved()
    assert 0.4 <= seconds < 1.0


@pytest.fixture
def metrics_off_script(pg_uri: str) -> str:
    return textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from fastapi import FastAPI
        from semanticcache import HashingEmbedder, SemanticCache, SemanticCacheMiddleware

        async def main():
            async with SemanticCache(pg_uri={pg_uri!r}, embedder=HashingEmbedder()) as cache:
                assert cache.metrics is None
                app = FastAPI()
                app.add_middleware(SemanticCacheMiddleware, cache=cache)

                @app.post("/chat")
                async def chat() -> dict[str, int]:
                    return {{"n": 1}}

                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    body = {{"model": "off", "messages": [{{"role": "user", "content": "q"}}]}}
                    await c.post("/chat", json=body)
                    for _ in range(100):  # the store runs after the response
                        hit = await c.post("/chat", json=body)
                        if hit.headers["x-cache"] == "HIT":
                            break
                        await asyncio.sleep(0.05)
                    assert hit.headers["x-cache"] == "HIT", hit.headers
                await cache.put("stored directly", b"r")
                await cache.lookup("stored directly")
            print(sorted(m for m in sys.modules if m.startswith("prometheus_client")))

        asyncio.run(main())
        """
    )


def test_metrics_off_never_imports_prometheus_client(metrics_off_script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", metrics_off_script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "python")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_metrics_app_without_the_extra_names_the_pip_command(tmp_path: Path) -> None:
    # A module of that name that fails like a missing package would.
    fake = tmp_path / "prometheus_client"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(name='prometheus_client')\n")
    code = (
        "from semanticcache import metrics_app\n"
        "try:\n    metrics_app()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT / 'python'}"},
    )
    assert "ConfigurationError" in done.stdout, done.stdout + done.stderr
    assert 'pip install "fastapi-semcache[metrics]"' in done.stdout


async def test_the_mounted_app_serves_the_text_format(cache: SemanticCache) -> None:
    from semanticcache import metrics_app

    app = FastAPI()
    app.mount("/metrics", metrics_app())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        got = await client.get("/metrics/")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    assert "# TYPE semcache_lookups_total counter" in got.text
