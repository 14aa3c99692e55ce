"""Several hosts of one service on one Postgres (and one Redis): three uvicorn
processes, each on its own port, hot entries on. One new prompt sent to all three at once
costs one upstream call; an entry deleted through one process (or by another program) is
served by none; the hit and similarity counts of all three add up in Postgres."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import pytest

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache
from tests.servers import RedisServer, uvicorn_processes

CHAT = "/v1/chat/completions"
ADMIN = secrets.token_hex(24)
# One Host for every process: the route in the key includes it (and the port).
HOST = "chat.test"


@dataclass(frozen=True)
class Hosts:
    urls: list[str]
    calls: Path
    env: dict[str, str]

    def upstream_calls(self, model: str) -> int:
        """The upstream calls all three made for ``model``'s requests so far."""
        lines = self.calls.read_text().splitlines()
        return sum(1 for line in lines if line.split(" ", 1)[1] == model)


@pytest.fixture(scope="module")
def hosts(
    pg_uri: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    calls = tmp_path_factory.mktemp("hosts") / "calls.txt"
    calls.touch()
    env = {
        "WORKERS_CALLS": str(calls),
        # Counts are written when the test says (GET /_flush), all three at once.
        "WORKERS_HIT_FLUSH_SECONDS": "3600",
        "SEMANTIC_CACHE_PG_URI": pg_uri,
        # A database of its own: the other modules empty database 0 for each test.
        "SEMANTIC_CACHE_REDIS_URI": f"redis://127.0.0.1:{redis_server.port}/3",
        "SEMANTIC_CACHE_HOT_ENTRIES": "1000",
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        "SEMANTIC_CACHE_ADMIN_TOKEN": ADMIN,
        # The processes name an entry by the same token and read each other's.
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": secrets.token_hex(16),
    }
    with uvicorn_processes("tests.workers_app:app", 3, env) as urls:
        yield Hosts(urls, calls, env)


@pytest.fixture
async def outside(hosts: Hosts) -> AsyncIterator[SemanticCache]:
    """A cache of the same table in this process, as another program would open it."""
    cache = SemanticCache(settings=CacheSettings.from_env(hosts.env), embedder=HashingEmbedder())
    try:
        yield cache
    finally:
        await cache.close()


def _body(model: str, prompt: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def _headers(*, store: bool = True, delay: float = 0.0) -> dict[str, str]:
    headers = {"host": HOST, "x-test-delay": str(delay)}
    if not store:
        headers["x-test-no-store"] = "1"
    return headers


async def _ask(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, *, store: bool = True
) -> httpx.Response:
    got = await client.post(url + CHAT, json=_body(model, prompt), headers=_headers(store=store))
    assert got.status_code == 200
    return got


def _words() -> str:
    """A prompt of random words: far from every other prompt, a miss until stored."""
    return " ".join(secrets.token_hex(3) for _ in range(6)) + "?"


async def _served_by_all(client: httpx.AsyncClient, hosts: Hosts, model: str, prompt: str) -> str:
    """Wait until each process serves ``prompt``'s entry (stored after its first answer);
    the entry's token."""
    async with asyncio.timeout(30):
        while True:
            hits = [await _ask(client, url, model, prompt) for url in hosts.urls]
            tokens: set[str | None] = {h.headers.get("x-cache-entry") for h in hits}
            if all(h.headers["x-cache"] == "HIT" for h in hits) and len(tokens) == 1:
                (token,) = tokens
                assert token is not None
                return token
            await asyncio.sleep(0.05)


def _at_once(urls: list[str], model: str, prompt: str) -> list[httpx.Response]:
    """``prompt`` sent to every process at the same moment (threads behind a barrier);
    the upstream answers after half a second, so the requests overlap."""
    barrier = threading.Barrier(len(urls))

    def ask(url: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            body = _body(model, prompt)
            return client.post(url + CHAT, json=body, headers=_headers(delay=0.5))

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(ask, urls))


def test_one_new_prompt_sent_to_three_processes_at_once_costs_one_upstream_call(
    hosts: Hosts,
) -> None:
    for _ in range(3):
        model = f"sf-{secrets.token_hex(4)}"
        answers = _at_once(hosts.urls, model, "How many moons does Jupiter have?")
        assert [a.status_code for a in answers] == [200] * 3
        assert len({a.headers["x-worker-pid"] for a in answers}) == 3
        seen = [(a.headers["x-cache"], a.headers.get("x-cache-reason")) for a in answers]
        assert hosts.upstream_calls(model) == 1, seen
        assert sorted(a.headers["x-cache"] for a in answers) == ["HIT", "HIT", "MISS"]
        assert len({a.content for a in answers}) == 1  # the one call's answer, in all three


@pytest.mark.parametrize("through", ["admin", "api"])
async def test_an_entry_deleted_through_one_process_is_served_by_none(
    hosts: Hosts, outside: SemanticCache, through: Literal["admin", "api"]
) -> None:
    model = f"del-{secrets.token_hex(4)}"
    prompt = "What is the capital of France?"
    async with httpx.AsyncClient(timeout=30) as client:
        first = await _ask(client, hosts.urls[0], model, prompt)
        assert first.headers["x-cache"] == "MISS"
        token = await _served_by_all(client, hosts, model, prompt)
        # Each serves it several times: from Redis or Postgres, then from its memory.
        before = [await _ask(client, url, model, prompt) for url in hosts.urls for _ in range(3)]
        assert {(a.headers["x-cache"], a.headers["x-cache-entry"]) for a in before} == {
            ("HIT", token)
        }
        assert {a.content for a in before} == {first.content}

        if through == "admin":
            deleted = await client.request(
                "DELETE",
                f"{hosts.urls[1]}/admin/entries/{token}",
                json={"scope": ""},
                headers={"authorization": f"Bearer {ADMIN}"},
            )
            assert (deleted.status_code, deleted.json()) == (200, {"deleted": True})
        else:
            entry_id = outside.entry_id(token)
            assert entry_id is not None
            assert await outside.delete(entry_id)

        # Nothing is stored from now on: a hit could only be the deleted entry. The
        # process that deleted it is asked first, at once.
        order = [hosts.urls[1], hosts.urls[0], hosts.urls[2]]
        after = [
            await _ask(client, url, model, prompt, store=False) for url in order for _ in range(3)
        ]
    assert len({a.headers["x-worker-pid"] for a in after}) == 3
    assert [a.headers["x-cache"] for a in after] == ["MISS"] * len(after)
    assert all("x-cache-entry" not in a.headers for a in after)
    assert first.content not in {a.content for a in after}


async def _flush_all(client: httpx.AsyncClient, hosts: Hosts) -> None:
    """Every process writes its pending counts, all at the same moment."""
    flushed = await asyncio.gather(*(client.get(url + "/_flush") for url in hosts.urls))
    assert [f.status_code for f in flushed] == [200] * len(flushed)


async def _counted(cache: SemanticCache) -> tuple[int, int]:
    """Hits and searched lookups counted in Postgres, all processes together."""
    stats = await cache.stats()
    return stats.hits, sum(sum(buckets) for buckets in stats.nearest_similarity.values())


async def test_hit_and_similarity_counts_add_up_over_three_processes(
    hosts: Hosts, outside: SemanticCache
) -> None:
    model = f"counts-{secrets.token_hex(4)}"
    prompts = [_words() for _ in range(24)]
    novel_each = 4
    async with httpx.AsyncClient(timeout=30) as client:
        for prompt in prompts:
            assert (await _ask(client, hosts.urls[0], model, prompt)).headers["x-cache"] == "MISS"
        for prompt in prompts:
            await _served_by_all(client, hosts, model, prompt)
        await _flush_all(client, hosts)
        hits_before, searched_before = await _counted(outside)

        for _ in range(3):
            # Process i repeats every prompt i + 1 times, each process in its own order
            # (the order its pending counts are written in), and sends prompts that
            # miss (each counted with its nearest similarity).
            for i, url in enumerate(hosts.urls):
                order = prompts[i::] + prompts[:i]
                for prompt in order if i % 2 else reversed(order):
                    for _ in range(i + 1):
                        hit = await _ask(client, url, model, prompt)
                        assert hit.headers["x-cache"] == "HIT"
                for _ in range(novel_each):
                    miss = await _ask(client, url, model, _words(), store=False)
                    assert miss.headers["x-cache"] == "MISS"
            await _flush_all(client, hosts)

    hits, searched = await _counted(outside)
    assert hits - hits_before == 3 * len(prompts) * (1 + 2 + 3)
    assert searched - searched_before == 3 * len(hosts.urls) * novel_each
