"""Issue 16's done-when: through ``uvicorn --workers 2`` with Redis and hot entries on, a
hit reported wrong through the admin endpoint is a MISS in both workers at the next
identical request."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
QUESTION = "What is the capital of France?"
ADMIN = secrets.token_hex(24)
# Requests sent, at most, to see both workers answer (fresh connections spread them).
_TRIES = 80


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def workers(pg_uri: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    no_store = tmp_path / "no-store"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(ROOT)]),
        "ADMIN_TEST_NO_STORE": str(no_store),
        "SEMANTIC_CACHE_PG_URI": pg_uri,
        "SEMANTIC_CACHE_REDIS_URI": redis_url,
        "SEMANTIC_CACHE_HOT_ENTRIES": "100",
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        "SEMANTIC_CACHE_ADMIN_TOKEN": ADMIN,
        # Both workers name an entry by the same token and read each other's.
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": secrets.token_hex(16),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.admin.workers_app:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "uvicorn exited"
            try:
                # Refused without the token: the app is up.
                if httpx.get(url + "/admin/", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn never answered"
            time.sleep(0.2)
        yield url, no_store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ask(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}]}
    # A fresh connection each time: both workers take requests.
    got = httpx.post(url + CHAT, json=body, timeout=30)
    assert got.status_code == 200
    return got


def _until_both_workers(url: str, model: str, each: int) -> list[httpx.Response]:
    """Requests until each worker answered ``each`` of them."""
    answers: list[httpx.Response] = []
    for _ in range(_TRIES):
        answers.append(_ask(url, model))
        per_pid: dict[str, int] = {}
        for a in answers:
            per_pid[a.headers["x-worker-pid"]] = per_pid.get(a.headers["x-worker-pid"], 0) + 1
        if len(per_pid) == 2 and min(per_pid.values()) >= each:
            return answers
    pytest.fail(f"one worker answered all {_TRIES} requests")


def test_a_hit_reported_wrong_is_a_miss_in_both_workers(workers: tuple[str, Path]) -> None:
    url, no_store = workers
    model = f"m-{secrets.token_hex(4)}"
    first = _ask(url, model)
    assert first.headers["x-cache"] == "MISS"
    deadline = time.monotonic() + 30
    while (hit := _ask(url, model)).headers["x-cache"] != "HIT":
        assert time.monotonic() < deadline, "the entry was never stored"
        time.sleep(0.05)
    token = hit.headers["x-cache-entry"]

    # Both workers serve it, each several times: from Redis, then from their memory.
    before = _until_both_workers(url, model, each=3)
    assert {a.headers["x-cache"] for a in before} == {"HIT"}
    assert {a.headers["x-cache-entry"] for a in before} == {token}

    no_store.touch()  # from now on no answer is stored: a hit could only be the old entry
    reported = httpx.post(
        f"{url}/admin/entries/{token}/report-wrong",
        json={"scope": ""},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    assert (reported.status_code, reported.json()) == (200, {"reported": True})

    after = _until_both_workers(url, model, each=3)
    assert [a.headers["x-cache"] for a in after] == ["MISS"] * len(after)
    assert all("x-cache-entry" not in a.headers for a in after)
