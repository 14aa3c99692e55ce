"""``semcache near-misses URL`` against a running server: the same list as the admin
endpoint's JSON, digests only, and a one-line error without the token or with a wrong
one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.admin.conftest import ADMIN
from tests.cli.helpers import assert_one_error_line, semcache

QUESTION = "What is the capital of France?"
# Near the question under the hashing embedder, and below the server's 0.9 threshold.
NEAR = "What is the capital of Spain?"


def _ask(url: str, text: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    got = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
    assert got.status_code == 200
    return got.headers["x-cache"]


def test_near_misses_from_a_running_server(dashboard_server: tuple[str, Path]) -> None:
    url, _ = dashboard_server
    admin = url + "/admin"
    env = {"SEMANTIC_CACHE_ADMIN_TOKEN": ADMIN}
    empty = semcache("near-misses", admin, env=env)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "no near miss yet"

    assert _ask(url, QUESTION) == "MISS"
    assert _ask(url, NEAR) == "MISS"
    served = httpx.get(admin + "/near-misses", headers={"authorization": f"Bearer {ADMIN}"})
    assert served.status_code == 200
    near = served.json()["near_misses"]
    assert len(near) == 1
    assert near[0]["reason"] == "miss"

    listed = semcache("near-misses", admin, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"near_misses": near}
    table = semcache("near-misses", admin + "/", env=env)
    assert table.returncode == 0, table.stderr
    assert near[0]["text_digest"] in table.stdout
    assert near[0]["entry"] in table.stdout
    assert "Spain" not in table.stdout + listed.stdout

    wrong = semcache("near-misses", admin, env={"SEMANTIC_CACHE_ADMIN_TOKEN": "x" * 32})
    assert "refused the admin token" in assert_one_error_line(wrong, 1)
    assert ADMIN not in wrong.stderr
    unset = semcache("near-misses", admin)
    assert "SEMANTIC_CACHE_ADMIN_TOKEN" in assert_one_error_line(unset, 2)
    local = semcache("near-misses", "file:///etc/passwd", env=env)
    assert_one_error_line(local, 2)
