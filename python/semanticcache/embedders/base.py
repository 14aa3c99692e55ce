"""The embedder interface the cache depends on."""

from __future__ import annotations

import abc
from collections.abc import Sequence

__all__ = ["BaseEmbedder"]


class BaseEmbedder(abc.ABC):
    """Turns texts into fixed-size vectors for cosine similarity search.

    Implementations set ``model_id`` (stable: it names the storage table, so vectors of
    different models never mix) and ``dimension`` (length of every vector returned).
    """

    model_id: str
    """Stable identifier of the model and its configuration, e.g. ``"text-embedding-3-small"``."""

    dimension: int
    """Length of every vector :meth:`embed` returns."""

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts``: one vector of length :attr:`dimension` per text, in order.

        Raises :class:`~semanticcache.errors.EmbedderError` when the model cannot answer.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dimension={self.dimension})"
