"""``SemanticCache``'s keyword arguments: the settings they override, the checks of the rest."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Final

from semanticcache._settings import CacheSettings
from semanticcache._settings_process import get_cache_settings
from semanticcache.errors import ConfigurationError

# The keywords that override a setting: keyword -> field of CacheSettings. The keywords
# are the documented, shorter spelling of those fields.
SETTING_KEYWORDS: Final = {
    "pg_uri": "pg_uri",
    "redis_uri": "redis_uri",
    "threshold": "threshold",
    "top_k": "top_k_candidates",
    "rejection_threshold": "rejection_threshold",
    "agreement_check": "agreement_check",
    "hnsw_m": "pgvector_hnsw_m",
    "hnsw_ef_construction": "pgvector_hnsw_ef_construction",
    "ef_search": "pgvector_hnsw_ef_search",
    "ttl_days": "pg_ttl_days",
    "embed_timeout": "embed_timeout_seconds",
    "store_timeout": "store_timeout_seconds",
    "pool_min_size": "pg_pool_min_size",
    "pool_max_size": "pg_pool_max_size",
    "breaker_failures": "breaker_failures",
    "breaker_cooldown": "breaker_cooldown_seconds",
    "hot_entries": "hot_entries",
}

# The keywords that are not settings, their defaults and their ranges.
CONNECT_TIMEOUT: Final = 10.0
HIT_FLUSH_INTERVAL: Final = 1.0
PURGE_INTERVAL: Final = 60.0
PURGE_BATCH: Final = 1000
PURGE_PAUSE: Final = 1.0
# Memory for hot entries (``hot_entries``), responses' bytes.
HOT_BYTES: Final = 64 * 1024 * 1024
# Recent embeddings kept per cache (~3 KB each at 384 dimensions).
EMBEDDING_MEMO: Final = 1024

_SECONDS: Final = ("connect_timeout", "hit_flush_interval", "purge_interval", "purge_pause")
_COUNTS: Final[dict[str, tuple[int, int | None]]] = {
    "purge_batch_size": (1, 1_000_000),
    "embedding_memo_size": (0, 1_000_000),
    "hot_entries_bytes": (0, None),
}


def merged_settings(
    settings: CacheSettings | None, arguments: Mapping[str, object]
) -> CacheSettings:
    """``settings`` (default: the environment's) with the keywords of
    :data:`SETTING_KEYWORDS` that are not ``None`` applied, validated together."""
    overrides = {
        field: arguments[keyword]
        for keyword, field in SETTING_KEYWORDS.items()
        if arguments[keyword] is not None
    }
    base = settings if settings is not None else get_cache_settings()
    try:
        # replace() runs the settings' validation on the merged values.
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        raise ConfigurationError(f"invalid SemanticCache argument: {exc}") from None


def check_tuning(arguments: Mapping[str, object]) -> None:
    """Raise :class:`ConfigurationError` for a keyword outside its range."""
    for name in _SECONDS:
        seconds = arguments[name]
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise ConfigurationError(f"{name} must be > 0 seconds, not {seconds}")
    for name, (least, most) in _COUNTS.items():
        count = arguments[name]
        if (
            isinstance(count, bool)
            or not isinstance(count, int | float)
            or count < least
            or (most is not None and count > most)
        ):
            bounds = f"in {least}..{most}" if most is not None else f">= {least}"
            raise ConfigurationError(f"{name} must be {bounds}, not {count}")
