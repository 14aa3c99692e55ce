"""The reverse proxy: :func:`create_semantic_cache_proxy_app` (see docs/proxy.md).

Needs the ``proxy`` extra (FastAPI + aiohttp): ``pip install "fastapi-semcache[proxy]"``.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401
    import fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from semanticcache.errors import ConfigurationError

    raise ConfigurationError(
        f"the reverse proxy needs {exc.name or 'its dependencies'}: "
        'pip install "fastapi-semcache[proxy]"'
    ) from exc

from semanticcache._proxy.app import create_semantic_cache_proxy_app
from semanticcache._proxy.forward import Forwarder

__all__ = ["Forwarder", "create_semantic_cache_proxy_app"]
