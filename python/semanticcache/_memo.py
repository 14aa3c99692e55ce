"""Embeddings of lookup texts: the embedder under its guard, checked, recent ones remembered."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from semanticcache._embedders.base import BaseEmbedder
from semanticcache._guard import Guard
from semanticcache._offload import off_loop_if_long
from semanticcache._storage.pgvector import BinaryVector
from semanticcache._tracing import EMBED
from semanticcache.errors import EmbedderError

if TYPE_CHECKING:
    from semanticcache._tracing import Tracing


class BadVector(EmbedderError):
    """The embedder answered with vectors of the wrong shape or values."""


class Embeddings:
    """One vector per text, under the embedder's guard (:class:`Unavailable` when it
    fails), :class:`BadVector` when the answer is malformed.

    Recent vectors are remembered (``memo_size``): the ``put`` that follows a missed
    lookup, and a paraphrase asked again, cost no second embedding call.
    """

    def __init__(
        self,
        embedder: BaseEmbedder,
        guard: Guard,
        memo_size: int,
        *,
        on_embed: Callable[[float], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.embedder = embedder
        self.guard = guard
        self.memo = VectorMemo(memo_size)
        self._on_embed = on_embed  # told the seconds of each embedder call (metrics)
        self._tracing = tracing

    async def memo_key(self, text: str) -> bytes:
        """The memo key of ``text`` (hashed off the loop for a long text)."""
        return await off_loop_if_long(len(text), lambda: VectorMemo.key(text))

    async def embed(self, text: str, memo_key: bytes | None = None) -> BinaryVector:
        """The vector of ``text``; ``memo_key``: its :meth:`memo_key`, when known."""
        if memo_key is None:
            memo_key = await self.memo_key(text)
        remembered = self.memo.get(memo_key)
        if remembered is not None:
            return remembered
        started = time.perf_counter()
        if self._tracing is None or self._tracing.untraced():
            vectors = await self.guard.call(lambda: self.embedder.embed([text]))
        else:
            with self._tracing.span(EMBED, {"semcache.embedder.model": self.embedder.model_id}):
                vectors = await self.guard.call(lambda: self.embedder.embed([text]))
        if self._on_embed is not None:
            self._on_embed(time.perf_counter() - started)
        vector = check_vector(vectors, self.embedder)
        self.memo.add(memo_key, vector)
        return vector


class VectorMemo:
    """The last ``size`` embeddings (packed, as pgvector takes them), by a digest of the
    exact text (not the normalized one: two spellings that share an entry may still
    embed differently). Keyed by a 16-byte BLAKE2b digest so that long prompts are not
    kept alive as keys.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, BinaryVector] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(text: str) -> bytes:
        """The memo key of ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=16, person=b"semcache-memo").digest()

    def get(self, key: bytes) -> BinaryVector | None:
        if not self._size:
            return None
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def add(self, key: bytes, vector: BinaryVector) -> None:
        if not self._size:
            return
        self._items[key] = vector
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def check_vector(vectors: object, embedder: BaseEmbedder) -> BinaryVector:
    """The single vector of a one-text batch, packed for pgvector; ``BadVector``
    otherwise (the store then takes it without checking it again).

    Lenient about containers (lists, tuples, numpy arrays), strict about content.
    """
    try:
        rows = list(vectors)  # type: ignore[call-overload]
    except TypeError:
        raise BadVector(
            f"{embedder!r} returned a {type(vectors).__name__}, not a list of vectors"
        ) from None
    if len(rows) != 1:
        raise BadVector(f"{embedder!r} returned {len(rows)} vectors for 1 text; expected 1")
    try:
        vector = [float(x) for x in rows[0]]
    except (TypeError, ValueError):
        raise BadVector(f"{embedder!r} returned a vector that is not a list of numbers") from None
    if len(vector) != embedder.dimension:
        raise BadVector(
            f"{embedder!r} returned a vector of dimension {len(vector)}; "
            f"expected {embedder.dimension}"
        )
    if not all(map(math.isfinite, vector)):
        raise BadVector(f"{embedder!r} returned a vector with NaN or infinite values")
    if not any(vector):
        raise BadVector(f"{embedder!r} returned the zero vector (no cosine direction)")
    try:
        return BinaryVector.pack(vector)
    except OverflowError:
        raise BadVector(f"{embedder!r} returned a value beyond float32 range") from None
