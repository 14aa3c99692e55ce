"""A zero-cost, deterministic, dependency-free embedder for demos, tests and benchmarks.

It is **not a semantic model**: texts are similar when they share words, word pairs and
character trigrams, so a light rewording ("What is the capital of France?" /
"what's the capital city of France") scores high, while a paraphrase with other words or
another language does not. Use a real embedding model for production traffic.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence
from typing import ClassVar

from semanticcache.embedders.base import BaseEmbedder
from semanticcache.errors import ConfigurationError

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+")
# Weights per feature family: whole words carry the meaning, trigrams add tolerance to
# inflections and typos without dominating.
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_TRIGRAM_WEIGHT = 0.35


class HashingEmbedder(BaseEmbedder):
    """Feature hashing of lower-cased word unigrams, bigrams and char trigrams.

    Each feature is hashed with BLAKE2b (stable across runs and machines, unlike
    ``hash()``) to a bucket and a sign; the vector is L2-normalized. An empty text maps to
    a fixed unit vector. Same text, same vector, on any machine.
    """

    # Pure CPU, microseconds per short text: embedding before the exact check is free.
    embeds_cheaply: ClassVar[bool] = True

    def __init__(self, dimension: int = 256) -> None:
        if not 8 <= dimension <= 16000:
            raise ConfigurationError(
                f"HashingEmbedder dimension must be in 8..16000, not {dimension}"
            )
        self.dimension = dimension
        self.model_id = "hashing-v1"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text (pure CPU, microseconds per short text)."""
        return [self.embed_one(text) for text in texts]

    def embed_one(self, text: str) -> list[float]:
        """The vector of one text, synchronously."""
        vector = [0.0] * self.dimension
        for feature, weight in _features(text):
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value >> 63 else -1.0
            vector[value % self.dimension] += sign * weight
        norm = math.sqrt(math.fsum(x * x for x in vector))
        if norm == 0.0:
            # No features (empty text) or, very rarely, features that cancel out.
            vector[0] = 1.0
            return vector
        return [x / norm for x in vector]


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    features = [(f"w:{w}", _UNIGRAM_WEIGHT) for w in words]
    features += [(f"b:{a} {b}", _BIGRAM_WEIGHT) for a, b in itertools.pairwise(words)]
    joined = f" {' '.join(words)} "
    features += [(f"c:{joined[i : i + 3]}", _TRIGRAM_WEIGHT) for i in range(len(joined) - 2)]
    return features
