"""The embedder interface the cache depends on, and the output checks every embedder shares."""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Sequence
from itertools import batched
from typing import ClassVar

from semanticcache.errors import EmbedderError

__all__ = ["BaseEmbedder", "check_embeddings", "pack_requests"]


class BaseEmbedder(abc.ABC):
    """Turns texts into fixed-size vectors for cosine similarity search.

    Implementations set ``model_id`` (stable: it names the storage table, so vectors of
    different models never mix) and ``dimension`` (length of every vector returned).
    Built-in embedders pass their results through :meth:`check_output`; a custom subclass
    may too, and the cache checks what it stores either way.
    """

    model_id: str
    """Stable identifier of the model and its configuration, e.g. ``"text-embedding-3-small"``."""

    dimension: int
    """Length of every vector :meth:`embed` returns."""

    embeds_cheaply: ClassVar[bool] = False
    """Whether :meth:`embed` of one short text costs less than a database round trip:
    in process, no fee, no network, no transient failures (a hashing function, a
    table look-up).

    When true, :class:`~semanticcache.SemanticCache` embeds a lookup text *before* the
    exact-match check and sends the exact probe and the similarity search as one
    statement: one round trip for every hit. When false (the default, and the right
    answer for remote, paid or model-based embedders, a local ONNX model included), an
    exact repeat is answered without calling :meth:`embed` at all, and a semantic hit
    costs two statements (exact probe, then search). Set it on a subclass only if an
    extra :meth:`embed` call per exact hit is truly free.
    """

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts``: one vector of length :attr:`dimension` per text, in order.

        Raises :class:`~semanticcache.errors.EmbedderError` when the model cannot answer.
        """

    async def aclose(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Release clients, connections or threads the embedder holds (default: none).

        The embedder must not be used afterwards.
        """

    def check_output(self, count: int, vectors: object) -> list[list[float]]:
        """``vectors`` as plain lists of floats, after :func:`check_embeddings` (``count``
        vectors of :attr:`dimension` finite, non-zero numbers); raises
        :class:`~semanticcache.errors.EmbedderError` naming this embedder otherwise."""
        return check_embeddings(vectors, count=count, dimension=self.dimension, source=repr(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dimension={self.dimension})"


def check_embeddings(
    vectors: object, *, count: int, dimension: int, source: str = "embedder"
) -> list[list[float]]:
    """Check a model's answer and return it as ``list[list[float]]``.

    The answer must hold exactly ``count`` vectors, each of exactly ``dimension`` real
    numbers (``bool`` and strings are refused), all finite and not all zero: a zero vector
    has no direction, so its cosine similarity is undefined (pgvector returns NaN).
    Raises :class:`~semanticcache.errors.EmbedderError` that names ``source`` and the
    first offending vector.
    """
    if not isinstance(vectors, Sequence) or isinstance(vectors, str | bytes):
        raise EmbedderError(f"{source} returned {type(vectors).__name__}, not a list of vectors")
    if len(vectors) != count:
        raise EmbedderError(f"{source} returned {len(vectors)} vector(s) for {count} text(s)")
    out: list[list[float]] = []
    for index, vector in enumerate(vectors):
        if not isinstance(vector, Sequence) or isinstance(vector, str | bytes):
            raise EmbedderError(
                f"{source} returned {type(vector).__name__} as vector {index}, not a list"
            )
        if len(vector) != dimension:
            raise EmbedderError(
                f"{source} returned vector {index} of length {len(vector)}, expected {dimension}"
            )
        if not all(_is_real(x) for x in vector):
            raise EmbedderError(f"{source} returned a non-number in vector {index}")
        values = [float(x) for x in vector]
        if not all(map(math.isfinite, values)):
            raise EmbedderError(f"{source} returned a NaN or infinite value in vector {index}")
        if not any(values):
            raise EmbedderError(f"{source} returned an all-zero vector {index}")
        out.append(values)
    return out


def _is_real(value: object) -> bool:
    return isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool))


def batches(texts: Sequence[str], size: int) -> Iterator[list[str]]:
    """``texts`` in order, in lists of at most ``size`` (a provider's per-request limit)."""
    for chunk in batched(texts, size):
        yield list(chunk)


def pack_requests(
    items: Sequence[tuple[str, int]], *, max_items: int, max_tokens: int
) -> list[list[str]]:
    """Split ``(text, token bound)`` pairs, in order, into requests of at most
    ``max_items`` texts whose bounds sum to at most ``max_tokens`` (a single text over
    ``max_tokens`` still gets a request of its own)."""
    requests: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text, count in items:
        if current and (len(current) >= max_items or tokens + count > max_tokens):
            requests.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += count
    if current:
        requests.append(current)
    return requests


def sendable_text(text: str) -> str:
    """``text`` with lone surrogates replaced by ``?``.

    A Python ``str`` may hold them (JSON's ``"\\ud800"`` decodes to one), but they cannot
    be encoded as UTF-8, so neither JSON bodies nor Rust tokenizers accept them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def shorten(message: object, limit: int = 200) -> str:
    """``str(message)`` cut to ``limit`` characters, for error messages quoting a body."""
    text = str(message)
    return text if len(text) <= limit else text[:limit] + "..."


def check_types(texts: Sequence[object]) -> None:
    """Raise ``TypeError`` naming the first item of ``texts`` that is not a ``str``."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is {type(text).__name__}, not str")
