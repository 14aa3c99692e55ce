"""The process-wide settings: read from ``os.environ`` once, shared by every caller."""

from __future__ import annotations

import threading

from semanticcache._settings import CacheSettings

__all__ = ["get_cache_settings", "reset_cache_settings"]

_lock = threading.Lock()
_cached: CacheSettings | None = None


def get_cache_settings() -> CacheSettings:
    """The process-wide settings, read from ``os.environ`` on first call and then reused."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = CacheSettings.from_env()
        return _cached


def reset_cache_settings() -> None:
    """Forget the cached settings, so the next :func:`get_cache_settings` reads the
    environment again (for tests, or after changing the environment on purpose)."""
    global _cached
    with _lock:
        _cached = None
