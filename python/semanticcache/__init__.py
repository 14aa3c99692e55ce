"""fastapi-semcache: a semantic response cache for ASGI apps and LLM endpoints.

The public API is what ``__all__`` lists; everything else is private.
"""

from __future__ import annotations

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
