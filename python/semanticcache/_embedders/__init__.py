"""Embedders: turn lookup texts into vectors (``BaseEmbedder`` and its implementations).

Provider embedders live in their own modules (``semanticcache._embedders.openai``, ...) and
import their SDK, which comes with an extra; :func:`get_embedder` builds the configured one.
"""

from semanticcache._embedders.base import BaseEmbedder, check_embeddings
from semanticcache._embedders.factory import get_embedder
from semanticcache._embedders.hashing import HashingEmbedder

__all__ = ["BaseEmbedder", "HashingEmbedder", "check_embeddings", "get_embedder"]
