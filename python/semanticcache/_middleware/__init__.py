"""The ASGI middleware: :class:`SemanticCacheMiddleware` (see docs/middleware.md)."""

from __future__ import annotations

from semanticcache._middleware.asgi import ResponseValidator, SemanticCacheMiddleware
from semanticcache._middleware.record import StoredResponse, decode_record, encode_record

__all__ = [
    "ResponseValidator",
    "SemanticCacheMiddleware",
    "StoredResponse",
    "decode_record",
    "encode_record",
]
