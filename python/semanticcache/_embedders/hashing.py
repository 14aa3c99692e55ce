"""A zero-cost, deterministic, dependency-free embedder for demos, tests and benchmarks.

It is **not a semantic model**: texts are similar when they share words, word pairs and
character trigrams, so a light rewording ("What is the capital of France?" /
"what's the capital city of France") scores high, while a paraphrase with other words or
another language does not. Use a real embedding model for production traffic.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import ClassVar, Final

from semanticcache._embedders.base import BaseEmbedder
from semanticcache._offload import off_loop_if_long
from semanticcache.errors import ConfigurationError

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s")
# Weights per feature family: whole words carry the meaning, trigrams add tolerance to
# inflections and typos without dominating.
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_TRIGRAM_WEIGHT = 0.35
_FIRST = itemgetter(0)
_LAST = itemgetter(-1)
# Long texts are worked through in slices of about this many characters (or words): a
# regex or counting call over a whole 10 MB text would hold the GIL, and so the event
# loop, for the whole call, even from a worker thread.
_SLICE: Final = 16 * 1024


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
        """Embed each text (pure CPU, microseconds per short text; long batches on a
        worker thread)."""
        return await off_loop_if_long(
            sum(map(len, texts)), lambda: [self.embed_one(text) for text in texts]
        )

    def embed_one(self, text: str) -> list[float]:
        """The vector of one text, synchronously (linear in the text's length)."""
        vector = [0.0] * self.dimension
        for prefix, weight, counts in _feature_counts(text):
            # Each distinct feature is hashed once, with its weight times its count.
            # popitem(): a long text's counts are freed one by one, not in one
            # deallocation that would hold the GIL (and the event loop) for its length.
            while counts:
                feature, n = counts.popitem()
                data = f"{prefix}{feature}".encode()
                value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
                sign = 1.0 if value >> 63 else -1.0
                vector[value % self.dimension] += sign * weight * n
        norm = math.sqrt(math.fsum(x * x for x in vector))
        if norm == 0.0:
            # No features (empty text) or, very rarely, features that cancel out.
            vector[0] = 1.0
            return vector
        return [x / norm for x in vector]


def _feature_counts(text: str) -> list[tuple[str, float, Counter[str]]]:
    """The features of ``text`` as (prefix, weight, counts): word unigrams (``w:``),
    word bigrams (``b:``), and the character trigrams (``c:``) of the words joined by
    single spaces with a space at each end (counted without building that string:
    each trigram lies in one " word " or spans one space between two words)."""
    words: list[str] = []
    for piece in _slices(text):
        words += _WORD.findall(piece.lower())
    # Counted slice by slice, with C-level map() calls building the features' strings.
    word_counts: Counter[str] = Counter()
    pair_counts: Counter[str] = Counter()
    trigram_counts: Counter[str] = Counter()
    for start in range(0, len(words), _SLICE):
        word_counts.update(words[start : start + _SLICE])
        # One word of overlap: the pair across the slice boundary counts once.
        pairs = words[start : start + _SLICE + 1]
        following = pairs[1:]
        pair_counts.update(map("b:{} {}".format, pairs, following))
        # The trigrams across a space: a word's last character and the next one's first.
        trigram_counts.update(map("c:{} {}".format, map(_LAST, pairs), map(_FIRST, following)))
    while words:  # freed a slice at a time (see embed_one)
        del words[-_SLICE:]
    # Every other trigram of the joined text is one of " word ", for each word.
    for word, n in word_counts.items():
        padded = f" {word} "
        for i in range(len(padded) - 2):
            trigram_counts[f"c:{padded[i : i + 3]}"] += n
    return [
        ("w:", _UNIGRAM_WEIGHT, word_counts),
        ("", _BIGRAM_WEIGHT, pair_counts),
        ("", _TRIGRAM_WEIGHT, trigram_counts),
    ]


def _slices(text: str) -> Iterator[str]:
    """``text`` cut after white space every ``_SLICE`` characters or so: no word spans
    two slices, and lower-casing each slice is lower-casing the text (a final sigma's
    form depends on what follows it, up to the next white space)."""
    start = 0
    while len(text) - start > _SLICE:
        space = _SPACE.search(text, start + _SLICE)
        if space is None:
            break
        yield text[start : space.end()]
        start = space.end()
    yield text[start:]
