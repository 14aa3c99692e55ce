"""The admin tests' uvicorn server for the dashboard: tests/workers_app.py (the
middleware in front of a chat route, the admin endpoint at /admin) on a free loopback
port, its access log (info level) in a file, which the tests read."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN = secrets.token_hex(24)
"""The server's admin token."""


@pytest.fixture
def dashboard_server(pg_uri: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(ROOT)]),
        "WORKERS_CALLS": str(tmp_path / "calls.txt"),
        "SEMANTIC_CACHE_PG_URI": pg_uri,
        "SEMANTIC_CACHE_THRESHOLD": "0.9",
        "SEMANTIC_CACHE_ADMIN_TOKEN": ADMIN,
        "SEMANTIC_CACHE_LOG_DIGEST_KEY": secrets.token_hex(16),
    }
    command = [sys.executable, "-m", "uvicorn", "tests.workers_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/admin/", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn never answered"
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
