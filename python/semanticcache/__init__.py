"""fastapi-semcache: a semantic response cache for ASGI apps and LLM endpoints.

The public API is what ``__all__`` lists, plus ``create_semantic_cache_proxy_app`` (the
``proxy`` extra), loaded on first access. It is left out of ``__all__`` so that ``from
semanticcache import *`` (and the ``fastapi_semcache`` alias) never needs FastAPI or
aiohttp; import it by name. Everything else is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticcache import _native
from semanticcache.cache import CacheHit, CacheLookup, CacheStats, SemanticCache
from semanticcache.embedders import BaseEmbedder, HashingEmbedder, get_embedder
from semanticcache.errors import (
    ConfigurationError,
    EmbeddedPostgresError,
    EmbedderError,
    NativeInputError,
    RequestBodyError,
    SemanticCacheError,
    StorageError,
    StreamFormatError,
)
from semanticcache.key import CacheKey
from semanticcache.middleware import SemanticCacheMiddleware

if TYPE_CHECKING:
    # Explicit re-export (``as``): importable by name, typed, and not in ``__all__``.
    from semanticcache.proxy import (
        create_semantic_cache_proxy_app as create_semantic_cache_proxy_app,
    )

__version__: str = _native.__version__

__all__ = [
    "BaseEmbedder",
    "CacheHit",
    "CacheKey",
    "CacheLookup",
    "CacheStats",
    "ConfigurationError",
    "EmbeddedPostgresError",
    "EmbedderError",
    "HashingEmbedder",
    "NativeInputError",
    "RequestBodyError",
    "SemanticCache",
    "SemanticCacheError",
    "SemanticCacheMiddleware",
    "StorageError",
    "StreamFormatError",
    "__version__",
    "get_embedder",
]


def __getattr__(name: str) -> object:
    # The proxy needs FastAPI and aiohttp (the ``proxy`` extra): imported on first use
    # only, so ``import semanticcache`` never pulls them in.
    if name == "create_semantic_cache_proxy_app":
        from semanticcache.proxy import create_semantic_cache_proxy_app

        return create_semantic_cache_proxy_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
