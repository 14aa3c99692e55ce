"""The proxy app: its lifespan (session and cache opened, closed at shutdown), user
routes before the forwarder, argument checks, and the lazy import of the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import httpx
import pytest

from semanticcache import CacheKey, ConfigurationError, HashingEmbedder, SemanticCache
from semanticcache._native import scan_request
from semanticcache._proxy import Forwarder, create_semantic_cache_proxy_app
from semanticcache._proxy.decoding import DecodeChain
from tests.proxy.conftest import CHAT, Upstream, chat_body, serve


class RecordingCache(SemanticCache):
    """A real cache that counts its open and close calls."""

    opened = 0
    closed = 0

    async def open(self) -> None:
        self.opened += 1
        await super().open()

    async def close(self) -> None:
        self.closed += 1
        await super().close()


async def test_lifespan_opens_and_closes_the_session_and_the_cache(
    upstream: Upstream, pg_uri: str, model: str
) -> None:
    cache = RecordingCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=0.9)
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    forwarder = app.state.proxy_forwarder
    assert isinstance(forwarder, Forwarder)
    assert _session(forwarder) is None
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        assert cache.opened == 1
        assert _session(forwarder) is not None
        got = await http.post(CHAT, json=chat_body(model, "stored at shutdown"))
        assert got.headers["x-cache"] == "MISS"
        assert cache.closed == 0
    # Shut down: the store in flight finished first, then both closed.
    assert cache.closed == 1
    assert _session(forwarder) is None
    assert app.state.semantic_cache_middleware.pending_stores == 0
    async with cache:
        hit = await cache.lookup(_key(base, model, "stored at shutdown"))
    assert hit.hit is not None


def _session(forwarder: Forwarder) -> object:
    return forwarder.session


def _key(base: str, model: str, text: str) -> CacheKey:
    # The route is the whole target the client asked the proxy for.
    scan = scan_request(json.dumps(chat_body(model, text)).encode())
    key = CacheKey.from_scan(scan, route=base + CHAT)
    assert key is not None
    return key


async def test_a_cache_that_cannot_open_fails_open(upstream: Upstream, model: str) -> None:
    cache = SemanticCache(pg_uri="postgresql://nobody@127.0.0.1:1/none", embedder=HashingEmbedder())
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        got = await http.post(CHAT, json=chat_body(model, "no database"))
    assert got.status_code == 200
    assert got.json()["choices"][0]["message"]["content"] == "answer number 1"
    assert got.headers["x-cache"] == "ERROR"


async def test_user_routes_win_and_the_rest_is_forwarded(
    upstream: Upstream, cache: SemanticCache
) -> None:
    app = create_semantic_cache_proxy_app(upstream.url, cache)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        # The proxy has no docs of its own: the upstream's pass through.
        assert (await http.get("/docs")).json() == {"path": "/docs", "method": "GET"}
        assert (await http.get("/openapi.json")).json()["path"] == "/openapi.json"
    assert upstream.calls["/healthz"] == 0
    assert upstream.calls["/docs"] == 1


async def test_without_lifespan_the_forwarder_answers_503(
    upstream: Upstream, cache: SemanticCache
) -> None:
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        got = await http.get("/x")
    assert got.status_code == 503
    assert got.json() == {"detail": "proxy not started"}


@pytest.mark.parametrize(
    "upstream_url",
    ["", "ftp://host/", "127.0.0.1:8000", "http:///nohost", "http://h/?q=1", "http://u:p@h/"],
)
def test_bad_upstream_is_a_configuration_error(cache: SemanticCache, upstream_url: str) -> None:
    with pytest.raises(ConfigurationError, match="upstream"):
        create_semantic_cache_proxy_app(upstream_url, cache)


@pytest.mark.parametrize(
    "upstream_url", ["ftp://u:s3cret@host/", "http://u:s3cret@h:port/", "https://s3cret@/"]
)
def test_bad_upstream_message_shows_no_password(cache: SemanticCache, upstream_url: str) -> None:
    with pytest.raises(ConfigurationError, match="upstream") as info:
        create_semantic_cache_proxy_app(upstream_url, cache)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_bad_timeout_is_a_configuration_error(cache: SemanticCache, timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        create_semantic_cache_proxy_app("http://127.0.0.1:1", cache, timeout=timeout)


def test_bad_middleware_option_is_a_configuration_error(cache: SemanticCache) -> None:
    with pytest.raises(ConfigurationError, match="response_mode"):
        create_semantic_cache_proxy_app("http://127.0.0.1:1", cache, response_mode="bogus")  # type: ignore[arg-type]


def test_cache_must_be_a_semantic_cache() -> None:
    with pytest.raises(ConfigurationError, match="SemanticCache"):
        create_semantic_cache_proxy_app("http://127.0.0.1:1", object())  # type: ignore[arg-type]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )


def test_importing_the_package_imports_neither_fastapi_nor_aiohttp() -> None:
    done = _python(
        "import sys, semanticcache\n"
        "print(sorted(m for m in ('fastapi', 'aiohttp') if m in sys.modules))\n"
        "f = semanticcache.create_semantic_cache_proxy_app\n"
        "print(f.__module__, 'fastapi' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "semanticcache._proxy.app True True"]


def test_without_the_extra_a_clear_error_names_it() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "import semanticcache\n"
        "try:\n"
        "    semanticcache.create_semantic_cache_proxy_app\n"
        "except semanticcache.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "fastapi-semcache[proxy]"' in done.stdout
    assert "aiohttp" in done.stdout


def test_unknown_attribute_is_an_attribute_error() -> None:
    import semanticcache

    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = semanticcache.no_such_thing


@pytest.mark.parametrize(
    ("codings", "encode"),
    [
        ([], lambda b: b),
        (["gzip"], lambda b: _gzip(b)),
        (["deflate"], zlib.compress),
        (["deflate"], lambda b: _raw_deflate(b)),
        (["deflate", "gzip"], lambda b: _gzip(zlib.compress(b))),
    ],
)
def test_decode_chain_undoes_each_coding_in_order(codings: list[str], encode: object) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: several bounded pieces
    assert callable(encode)
    encoded = encode(data)
    chain = DecodeChain(codings)
    out = b"".join(
        p for i in range(0, len(encoded), 1000) for p in chain.decode(encoded[i : i + 1000])
    )
    out += b"".join(chain.flush())
    assert out == data


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def test_star_imports_and_the_alias_never_need_the_extra() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "from semanticcache import *\n"
        "import fastapi_semcache\n"
        "from fastapi_semcache import *\n"
        "print(SemanticCache is fastapi_semcache.SemanticCache)\n"
        "try:\n"
        "    from fastapi_semcache import create_semantic_cache_proxy_app\n"
        "except fastapi_semcache.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "True"
    assert 'pip install "fastapi-semcache[proxy]"' in lines[1]


def test_the_alias_serves_the_proxy_factory_by_name() -> None:
    import fastapi_semcache
    from semanticcache._proxy import create_semantic_cache_proxy_app

    assert fastapi_semcache.create_semantic_cache_proxy_app is create_semantic_cache_proxy_app
