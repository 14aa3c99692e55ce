"""Embedders: turn lookup texts into vectors (``BaseEmbedder`` and its implementations)."""

from semanticcache.embedders.base import BaseEmbedder
from semanticcache.embedders.hashing import HashingEmbedder

__all__ = ["BaseEmbedder", "HashingEmbedder"]
