"""``semcache serve``: argument handling and wiring (the proxy is replaced by a stand-in;
the end-to-end run through the real proxy is tested with the proxy itself)."""

from __future__ import annotations

import sys
import types
from typing import Any

import psycopg
import pytest

from semanticcache import HashingEmbedder, SemanticCache
from semanticcache._cli import main, serve
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier.card import load_card


def _fake_proxy(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def create_semantic_cache_proxy_app(*, upstream: str, cache: SemanticCache) -> object:
        seen["upstream"] = upstream
        seen["cache"] = cache
        return "the app"

    module = types.ModuleType("semanticcache._proxy")
    module.create_semantic_cache_proxy_app = create_semantic_cache_proxy_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "semanticcache._proxy", module)

    def run_uvicorn(app: object, host: str, port: int, log_level: str) -> None:
        seen["served"] = (app, host, port, log_level)

    monkeypatch.setattr(serve, "_run_uvicorn", run_uvicorn)
    return seen


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEMANTIC_CACHE_PG_URI", "SEMANTIC_CACHE_UPSTREAM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEMANTIC_CACHE_EMBEDDER_TYPE", "hashing")


def test_serve_wires_upstream_cache_and_uvicorn(
    pg_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_env(monkeypatch)
    seen = _fake_proxy(monkeypatch)
    status = main(
        ["serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "8181", "--pg-uri", pg_uri]
    )
    assert status == 0
    assert seen["upstream"] == "http://127.0.0.1:9/v1"
    assert isinstance(seen["cache"], SemanticCache)
    assert seen["cache"].settings.pg_uri == pg_uri
    assert seen["cache"].embedder.model_id == "hashing-v1"
    assert seen["served"] == ("the app", "127.0.0.1", 8181, "info")
    err = capsys.readouterr().err
    assert "upstream: http://127.0.0.1:9/v1" in err
    assert "listening on http://127.0.0.1:8181" in err
    assert "embedded defaults" not in err
    # Behind the hashing embedder the verifier is off (auto): the threshold decides.
    assert "table semcache_entries_hashing_v1_256, threshold 0.95\n" in err


def test_serve_says_how_the_verifier_decides(
    pg_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_env(monkeypatch)
    monkeypatch.setenv("SEMANTIC_CACHE_VERIFIER", "on")
    monkeypatch.setenv("SEMANTIC_CACHE_VERIFIER_THRESHOLD", "0.75")
    _fake_proxy(monkeypatch)
    assert main(["serve", "--upstream", "http://127.0.0.1:9/v1", "--pg-uri", pg_uri]) == 0
    card = load_card()
    assert (
        f"verifier {card.name} (floor {card.floor}, a hit at probability >= 0.750)\n"
        in capsys.readouterr().err
    )


def test_serve_reads_the_upstream_from_the_environment(
    pg_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_env(monkeypatch)
    monkeypatch.setenv("SEMANTIC_CACHE_UPSTREAM_URL", "https://api.example.org")
    seen = _fake_proxy(monkeypatch)
    assert main(["serve", "--pg-uri", pg_uri, "--host", "::1", "--log-level", "warning"]) == 0
    assert seen["upstream"] == "https://api.example.org"
    assert seen["served"][1:] == ("::1", 8080, "warning")


def test_serve_on_the_embedded_defaults(
    pg_server: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("SEMANTIC_CACHE_PG_URI", "SEMANTIC_CACHE_EMBEDDER_TYPE"):
        monkeypatch.delenv(name, raising=False)
    seen = _fake_proxy(monkeypatch)
    made: dict[str, Any] = {}

    def make_embedder(settings: CacheSettings) -> BaseEmbedder:
        made.update(settings=settings)
        return HashingEmbedder()  # the local model is the demo's business

    def make_cache(settings: CacheSettings, uri: str, embedder: BaseEmbedder) -> SemanticCache:
        made.update(uri=uri)
        return SemanticCache(pg_uri=uri, embedder=embedder)

    monkeypatch.setattr(serve, "_make_embedder", make_embedder)
    monkeypatch.setattr(serve, "_make_cache", make_cache)
    # The embedded data folder of the session's server: running, so it is reused.
    argv = ["serve", "--upstream", "http://127.0.0.1:9", "--data-dir", str(pg_server.data_dir)]
    assert main(argv) == 0
    assert seen["served"][0] == "the app"
    assert made["uri"] == pg_server.uri
    assert made["settings"].embedder_type == "local"
    err = capsys.readouterr().err
    assert "running on the embedded defaults: a local Postgres with pgvector and the " in err
    assert "postgres: reusing the running embedded development Postgres at " in err
    # Not started by serve, so not stopped by it.
    with psycopg.connect(pg_server.uri, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_missing_proxy_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_env(monkeypatch)
    # None in sys.modules makes the import fail like a missing package.
    monkeypatch.setitem(sys.modules, "semanticcache._proxy", None)
    assert main(["serve", "--upstream", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("semcache serve: error: semcache serve (the proxy) needs")
    assert 'pip install "fastapi-semcache[proxy]"' in err


async def test_serve_end_to_end_through_the_real_proxy(pg_uri: str) -> None:
    """``semcache serve`` as a subprocess in front of a loopback upstream: a miss goes
    upstream, the repeat is a hit, the client's X-Forwarded-For is not trusted."""
    import asyncio
    import os
    import signal

    import httpx

    from tests.proxy.conftest import CHAT, chat_body, run_upstream
    from tests.servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTIC_CACHE_")}
    env["SEMANTIC_CACHE_EMBEDDER_TYPE"] = "hashing"
    async with run_upstream() as upstream:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "semanticcache",
            "serve",
            "--upstream",
            upstream.url,
            "--pg-uri",
            pg_uri,
            "--port",
            str(port),
            "--log-level",
            "warning",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                async with asyncio.timeout(120):  # start-up bound, not a timing assertion
                    while True:
                        try:
                            await client.get("/ready-probe")
                            break
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                body = chat_body("serve-e2e", "How tall is Mount Everest?")
                headers = {"x-forwarded-for": "6.6.6.6"}
                first = await client.post(CHAT, json=body, headers=headers)
                second = await client.post(CHAT, json=body)
            assert first.status_code == second.status_code == 200
            assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
            assert second.json() == first.json()
            assert upstream.calls[CHAT] == 1
            forwarded = [v for n, v in upstream.headers[-1] if n.lower() == "x-forwarded-for"]
            assert forwarded == ["6.6.6.6, 127.0.0.1"]
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
