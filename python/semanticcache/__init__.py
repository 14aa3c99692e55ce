"""fastapi-semcache: a semantic response cache for ASGI apps and LLM endpoints.

The public API is this package (``__all__``), :mod:`semanticcache.errors` (the exception
tree, also re-exported here) and :mod:`semanticcache.calibration`. Modules and packages
whose name starts with ``_`` are private.

Names that need an optional extra are loaded on first access and left out of ``__all__``,
so that ``import semanticcache`` and ``from semanticcache import *`` never import an
extra's packages: ``create_semantic_cache_proxy_app`` (``proxy``), ``LocalEmbedder``
(``embed-local``), ``OpenAIEmbedder`` (``embed-openai``), ``OllamaEmbedder``
(``embed-ollama``), ``VoyageEmbedder`` (``embed-voyage``), ``CohereEmbedder``
(``embed-cohere``) and ``HuggingFaceEmbedder`` (``embed-huggingface``). Import them by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from semanticcache import _native
from semanticcache._admin import admin_app, admin_scope_token
from semanticcache._cache import SemanticCache
from semanticcache._devserver import EmbeddedPostgres
from semanticcache._embedders import BaseEmbedder, HashingEmbedder, get_embedder
from semanticcache._key import CacheKey
from semanticcache._masking import mask_connection_string
from semanticcache._metrics import metrics_app
from semanticcache._middleware import ResponseValidator, SemanticCacheMiddleware
from semanticcache._middleware.asgi import STORABLE_EXTENSION
from semanticcache._middleware.extractors import (
    SCOPE_HEADER,
    Extractor,
    client_extract_scope,
    trusted_extract_scope_from_server_side,
)
from semanticcache._results import CacheHit, CacheLookup, CacheStats, LookupReason
from semanticcache._settings import CacheSettings
from semanticcache._settings_process import get_cache_settings, reset_cache_settings
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

if TYPE_CHECKING:
    # Explicit re-exports (``as``): importable by name, typed, and not in ``__all__``.
    from semanticcache._embedders.cohere import CohereEmbedder as CohereEmbedder
    from semanticcache._embedders.huggingface import (
        HuggingFaceEmbedder as HuggingFaceEmbedder,
    )
    from semanticcache._embedders.local import LocalEmbedder as LocalEmbedder
    from semanticcache._embedders.openai import OllamaEmbedder as OllamaEmbedder
    from semanticcache._embedders.openai import OpenAIEmbedder as OpenAIEmbedder
    from semanticcache._embedders.voyage import VoyageEmbedder as VoyageEmbedder
    from semanticcache._proxy import (
        create_semantic_cache_proxy_app as create_semantic_cache_proxy_app,
    )

__version__: str = _native.__version__

__all__ = [
    "SCOPE_HEADER",
    "STORABLE_EXTENSION",
    "BaseEmbedder",
    "CacheHit",
    "CacheKey",
    "CacheLookup",
    "CacheSettings",
    "CacheStats",
    "ConfigurationError",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbedderError",
    "Extractor",
    "HashingEmbedder",
    "LookupReason",
    "NativeInputError",
    "RequestBodyError",
    "ResponseValidator",
    "SemanticCache",
    "SemanticCacheError",
    "SemanticCacheMiddleware",
    "StorageError",
    "StreamFormatError",
    "__version__",
    "admin_app",
    "admin_scope_token",
    "client_extract_scope",
    "get_cache_settings",
    "get_embedder",
    "mask_connection_string",
    "metrics_app",
    "reset_cache_settings",
    "trusted_extract_scope_from_server_side",
]

# Name -> private module, for the names whose module imports an optional extra.
_LAZY: Final = {
    "create_semantic_cache_proxy_app": "semanticcache._proxy",
    "LocalEmbedder": "semanticcache._embedders.local",
    "OpenAIEmbedder": "semanticcache._embedders.openai",
    "OllamaEmbedder": "semanticcache._embedders.openai",
    "VoyageEmbedder": "semanticcache._embedders.voyage",
    "CohereEmbedder": "semanticcache._embedders.cohere",
    "HuggingFaceEmbedder": "semanticcache._embedders.huggingface",
}


def __getattr__(name: str) -> object:
    # Imported on first use only, so that a missing extra fails where it is needed (with
    # the pip command that installs it) and ``import semanticcache`` stays light.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
