"""The one exception hierarchy of fastapi-semcache.

::

    SemanticCacheError
    ├── ConfigurationError          bad setting or argument, raised at start-up (also ValueError)
    ├── NativeInputError            input the native hot path refuses (also ValueError)
    │   ├── RequestBodyError        a request body that is not acceptable JSON for the cache
    │   └── StreamFormatError       an event stream that cannot be assembled or rendered
    ├── StorageError                Postgres / Redis failures the caller asked to see
    │   └── EmbeddedPostgresError   the embedded development Postgres could not start
    └── EmbedderError               an embedder call failed or returned bad vectors

The native extension raises these classes itself (it imports this module), so
``except RequestBodyError`` works the same for Rust and Python code paths.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EmbeddedPostgresError",
    "EmbedderError",
    "NativeInputError",
    "RequestBodyError",
    "SemanticCacheError",
    "StorageError",
    "StreamFormatError",
]


class SemanticCacheError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(SemanticCacheError, ValueError):
    """A setting or argument is invalid; the message names it and the accepted range."""


class NativeInputError(SemanticCacheError, ValueError):
    """Input refused by the native hot path.

    ``kind`` is a short stable code (for logs and metrics); ``offset`` is the byte offset
    in the input where the problem was found, when there is one.
    """

    def __init__(self, message: str, kind: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.offset = offset


class RequestBodyError(NativeInputError):
    """A request body the cache will not key: invalid JSON or UTF-8, lone surrogate,
    not an object, nested too deep, too large, or a duplicate key.

    ``kind`` is one of ``invalid_json``, ``invalid_utf8``, ``lone_surrogate``,
    ``not_object``, ``too_deep``, ``too_large``, ``duplicate_key``.
    """


class StreamFormatError(NativeInputError):
    """An event stream or stored completion that cannot be assembled or rendered."""


class StorageError(SemanticCacheError):
    """A storage operation failed in a way the caller asked to see."""


class EmbeddedPostgresError(StorageError):
    """The embedded development Postgres could not be installed, started or reached."""


class EmbedderError(SemanticCacheError):
    """An embedder call failed, timed out, or returned vectors of the wrong shape."""
