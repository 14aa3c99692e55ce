"""The dashboard in a real headless browser (Debian's chromium, driven over the DevTools
protocol): refused without the token, signed in through its form, and showing live
figures after known traffic without a reload. uvicorn serves tests/workers_app.py
(``dashboard_server`` in conftest.py) with its access log on: the token must never
reach it.

With ``SEMCACHE_DASHBOARD_SCREENSHOT=path.png`` the test also saves a screenshot of the
page after its traffic there (docs/img/dashboard.png was taken the same way, after a
minute of mixed traffic)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.admin.conftest import ADMIN
from tests.servers import free_port

CHAT = "/v1/chat/completions"
QUESTION = "What is the capital of France?"
# Near, not equal: misses whose nearest entry lands in the histograms and near misses.
PARAPHRASES = (
    "What is the capital of France today?",
    "What is the capital city of France?",
    "Tell me what the capital of France is?",
    "What is the capital of Spain?",
    "Which city is the capital of France?",
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    return None


class _Page:
    """One browser tab over the DevTools protocol (its flat session mode)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._id = 0
        self._session: str | None = None
        targets = self._call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self._call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self._session = attached["sessionId"]
        self._call("Page.enable")
        self._call(
            "Emulation.setDeviceMetricsOverride",
            width=1200,
            height=760,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                result: dict[str, Any] = reply["result"]
                return result

    def go(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        got = self._call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in got, got
        return got["result"].get("value")

    def until(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.2)

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", format="png")["data"])


@pytest.fixture
def page() -> Iterator[Callable[[], _Page]]:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="semcache-chromium-")
    # A container's /dev/shm is often too small for it: shared memory goes to /tmp.
    command = [binary, "--headless", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]
    command.append(f"--user-data-dir={profile}")
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # chromium refuses root with its sandbox on
    port = free_port()
    command.append(f"--remote-debugging-port={port}")
    # Its chatter goes to a file: a pipe nobody reads would fill and stall it.
    with (Path(profile) / "chromium.log").open("wb") as out:
        proc = subprocess.Popen([*command, "about:blank"], stdout=out, stderr=out)
    stack = contextlib.ExitStack()

    def open_page() -> _Page:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "chromium exited"
            try:
                version = httpx.get(f"http://127.0.0.1:{port}/json/version", timeout=1)
                url = version.json()["webSocketDebuggerUrl"]
                break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "chromium never opened its DevTools port"
            time.sleep(0.2)
        return _Page(stack.enter_context(connect(url, max_size=None, open_timeout=30)))

    try:
        yield open_page
    finally:
        stack.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _ask(url: str, text: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    got = httpx.post(url + CHAT, json=body, timeout=30)
    assert got.status_code == 200
    return got.headers["x-cache"]


def test_the_dashboard_in_a_browser(
    page: Callable[[], _Page], dashboard_server: tuple[str, Path]
) -> None:
    # ``page`` first: without chromium the test skips before a server starts.
    url, log = dashboard_server
    tab = page()
    dashboard = url + "/admin/dashboard"

    # Without the token: the sign-in form, no figures, and the data refused.
    tab.go(dashboard)
    tab.until("document.readyState === 'complete' && !!document.querySelector('form')")
    assert tab.js("document.getElementById('lookups') === null")
    assert tab.js("fetch('/admin/dashboard/data').then(r => r.status)") == 401
    assert tab.js("fetch('/admin/near-misses').then(r => r.status)") == 401

    # A wrong token: the form again.
    tab.js(
        "document.querySelector('input[name=token]').value = 'wrong-token-0123456789';"
        "document.querySelector('form').submit(); true"
    )
    tab.until("!!document.querySelector('p.wrong')")
    assert tab.js("document.getElementById('lookups') === null")

    # Signed in: the page, with nothing counted yet.
    tab.js(
        f"document.querySelector('input[name=token]').value = {json.dumps(ADMIN)};"
        "document.querySelector('form').submit(); true"
    )
    tab.until("!!document.getElementById('lookups')")
    assert tab.js("document.getElementById('hits').textContent") == "0"
    # HttpOnly: the page's script cannot read the session.
    assert "semcache_admin" not in tab.js("document.cookie")

    # Known traffic: one miss stores the answer; then hits until 5 were served.
    assert _ask(url, QUESTION) == "MISS"
    requests, hits = 1, 0
    deadline = time.monotonic() + 30
    while hits < 5:
        hits += _ask(url, QUESTION) == "HIT"
        requests += 1
        assert time.monotonic() < deadline, "the answer was never served from the cache"
    for text in PARAPHRASES:
        hits += _ask(url, text) == "HIT"
        requests += 1

    # The page refreshes itself: the figures arrive without a reload.
    tab.until(f"document.getElementById('lookups').textContent === '{requests}'")
    assert tab.js("document.getElementById('hits').textContent") == str(hits)
    assert tab.js("document.getElementById('saved').textContent") == str(hits)
    assert tab.js("document.querySelectorAll('#timeline rect').length") > 0
    assert tab.js("!!document.getElementById('hit-rate-line')")
    assert tab.js("!!document.getElementById('hist-misses')")
    assert "postgres" in tab.js("document.body.innerText")
    # The near misses come from Postgres (written in the background, read every 5 s).
    near = "[...document.querySelectorAll('section.wide')].pop()"
    assert "all processes" in tab.js(f"{near}.querySelector('h2').textContent")
    tab.until(f"{near}.querySelectorAll('tr').length > 1")

    shot = tab.screenshot()
    assert shot.startswith(b"\x89PNG")
    target = os.environ.get("SEMCACHE_DASHBOARD_SCREENSHOT")
    if target:
        Path(target).write_bytes(shot)

    # The access log has every request, and never the token.
    time.sleep(0.5)
    written = log.read_text()
    assert "/admin/dashboard/panel" in written
    assert ADMIN not in written
