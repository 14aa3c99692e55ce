"""``semcache near-misses`` against the Postgres of a running server: the near misses
that the server's process wrote, the same as its admin endpoint lists, digests only, by
table and scope."""

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


def test_near_misses_of_a_running_server(dashboard_server: tuple[str, Path], pg_uri: str) -> None:
    url, _ = dashboard_server
    admin = url + "/admin"
    assert _ask(url, QUESTION) == "MISS"  # the server's cache table exists from here
    empty = semcache("near-misses", "--pg-uri", pg_uri)
    assert empty.returncode == 0, empty.stderr
    assert "no near miss yet" in empty.stdout

    assert _ask(url, NEAR) == "MISS"
    httpx.get(url + "/_flush", timeout=30).raise_for_status()
    served = httpx.get(admin + "/near-misses", headers={"authorization": f"Bearer {ADMIN}"})
    assert served.status_code == 200
    (near,) = served.json()["near_misses"]
    assert near["reason"] == "miss"

    listed = semcache("near-misses", "--pg-uri", pg_uri, "--json")
    assert listed.returncode == 0, listed.stderr
    (table,) = json.loads(listed.stdout)["tables"]
    (found,) = table["near_misses"]
    assert found == {
        "at": near["at"],
        "scope": "",
        "text_digest": near["text_digest"],
        "entry": near["entry"],
        "similarity": near["similarity"],
        "reason": "miss",
    }
    text = semcache("near-misses", "--pg-uri", pg_uri, "--table", table["table"])
    assert text.returncode == 0, text.stderr
    assert near["text_digest"] in text.stdout
    assert near["entry"] in text.stdout
    assert "Spain" not in text.stdout + listed.stdout

    other = semcache("near-misses", "--pg-uri", pg_uri, "--scope", "tenant", "--json")
    assert json.loads(other.stdout)["tables"][0]["near_misses"] == []
    none = semcache("near-misses", "--pg-uri", pg_uri, "--limit", "0")
    assert "--limit" in assert_one_error_line(none, 2)
    missing = semcache("near-misses", "--pg-uri", pg_uri, "--table", "semcache_entries_nope")
    assert "no cache table" in assert_one_error_line(missing, 1)
