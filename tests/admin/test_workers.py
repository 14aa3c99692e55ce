"""Issue 16's done-when: two uvicorn worker processes on one Postgres and one Redis, with
hot entries on; a hit reported wrong through the admin endpoint is a MISS in both at the
next identical request. Each worker listens on its own port, so that every request
reaches the worker the test means (a shared socket spreads them as the kernel likes)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import uvicorn_processes

CHAT = "/v1/chat/completions"
QUESTION = "What is the capital of France?"
ADMIN = secrets.token_hex(24)


@pytest.fixture
def workers(pg_uri: str, redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        "WORKERS_CALLS": str(tmp_path / "calls.txt"),
        "SEMANTIC_CACHE_PG_URI": pg_uri,
        "SEMANTIC_CACHE_REDIS_URI": redis_url,
        "SEMANTIC_CACHE_HOT_ENTRIES": "100",
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        "SEMANTIC_CACHE_ADMIN_TOKEN": ADMIN,
        # Both workers name an entry by the same token and read each other's.
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": secrets.token_hex(16),
    }
    with uvicorn_processes("tests.workers_app:app", 2, env) as urls:
        yield urls


def _ask(url: str, model: str, *, store: bool = True) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
    # One Host for both workers: the route in the key includes it (and the port).
    headers = {"host": "chat.test"} if store else {"host": "chat.test", "x-test-no-store": "1"}
    got = httpx.post(url + CHAT, json=body, headers=headers, timeout=30)
    assert got.status_code == 200
    return got


def _from_each(
    urls: list[str], model: str, each: int, *, store: bool = True
) -> list[httpx.Response]:
    """``each`` answers from every worker, and a check that they are distinct processes."""
    answers = [_ask(url, model, store=store) for url in urls for _ in range(each)]
    assert len({a.headers["x-worker-pid"] for a in answers}) == len(urls)
    return answers


def test_a_hit_reported_wrong_is_a_miss_in_both_workers(workers: list[str]) -> None:
    urls = workers
    url = urls[0]
    model = f"m-{secrets.token_hex(4)}"
    assert _ask(url, model).headers["x-cache"] == "MISS"  # and stored, after the answer
    deadline = time.monotonic() + 30
    while True:
        hits = [_ask(u, model) for u in urls]
        tokens = {h.headers.get("x-cache-entry") for h in hits}
        if all(h.headers["x-cache"] == "HIT" for h in hits) and len(tokens) == 1:
            break
        assert time.monotonic() < deadline, "the entry was never served by both workers"
        time.sleep(0.05)
    (token,) = tokens
    assert token is not None

    # Both workers serve it, each several times: from Redis, then from their memory.
    before = _from_each(urls, model, each=3)
    assert {a.headers["x-cache"] for a in before} == {"HIT"}
    assert {a.headers["x-cache-entry"] for a in before} == {token}

    reported = httpx.post(
        f"{url}/admin/entries/{token}/report-wrong",
        json={"scope": ""},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    assert (reported.status_code, reported.json()) == (200, {"reported": True})

    # No answer from now on is stored: a hit could only be the old entry.
    after = _from_each(urls, model, each=3, store=False)
    assert [a.headers["x-cache"] for a in after] == ["MISS"] * len(after)
    assert all("x-cache-entry" not in a.headers for a in after)
