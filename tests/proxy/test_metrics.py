"""The proxy's metrics path (``SEMANTIC_CACHE_METRICS_PATH``): served by the proxy itself,
never forwarded; off by default; and the entry token on the proxy's hits."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from semanticcache import CacheSettings, HashingEmbedder, SemanticCache
from semanticcache._proxy import create_semantic_cache_proxy_app
from tests.proxy.conftest import CHAT, Upstream, chat_body, serve

METRICS = "/internal/metrics"


def _lookups(text: str, outcome: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "semcache_lookups_total" and s.labels == {
                "outcome": outcome,
                "route": "*",
            }:
                return s.value
    return 0.0


async def test_the_proxy_serves_its_metrics_path(
    upstream: Upstream, pg_uri: str, model: str
) -> None:
    settings = CacheSettings(pg_uri=pg_uri, threshold=0.9, metrics_path=METRICS)
    cache = SemanticCache(settings=settings, embedder=HashingEmbedder())
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        before = (await http.get(METRICS)).text
        miss = await http.post(CHAT, json=chat_body(model, "proxied question"))
        assert miss.headers["x-cache"] == "MISS"
        assert "x-cache-entry" not in miss.headers
        await app.state.semantic_cache_middleware.drain()
        hits = [await http.post(CHAT, json=chat_body(model, "proxied question")) for _ in range(2)]
        scrape = await http.get(METRICS)
        refused = await http.post(METRICS, content=b"{}")
    assert [h.headers["x-cache"] for h in hits] == ["HIT", "HIT"]
    tokens = {h.headers["x-cache-entry"] for h in hits}
    assert len(tokens) == 1
    assert len(tokens.pop()) == 32
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    # The proxy has no route templates: its lookups count under "*".
    assert _lookups(scrape.text, "exact_hit") - _lookups(before, "exact_hit") == 2
    assert _lookups(scrape.text, "miss") - _lookups(before, "miss") == 1
    # The path is the proxy's own: neither a scrape nor another method reaches the upstream.
    assert refused.status_code == 405
    assert upstream.calls[METRICS] == 0
    assert upstream.calls[CHAT] == 1


async def test_without_a_metrics_path_the_path_is_forwarded(
    upstream: Upstream, pg_uri: str
) -> None:
    cache = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder())
    assert cache.metrics is None
    app = create_semantic_cache_proxy_app(upstream.url, cache)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        await http.get("/metrics")
    assert upstream.calls["/metrics"] == 1
