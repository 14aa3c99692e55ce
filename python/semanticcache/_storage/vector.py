"""Embeddings as query parameters, in pgvector's binary wire format."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from semanticcache.errors import ConfigurationError

__all__ = ["BinaryVector", "vector_param"]


class BinaryVector:
    """A vector in pgvector's binary wire format, sent as a binary query parameter.

    ``vector_recv`` reads a 16-bit dimension, 16 unused bits and big-endian float32s:
    one ``struct.pack``, where the text form costs a ``repr`` per value on the client
    and a float parse per value on the server.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def dimension(self) -> int:
        """How many values the vector holds."""
        return (len(self.data) - 4) // 4

    @classmethod
    def pack(cls, values: Sequence[float]) -> BinaryVector:
        """Pack finite floats (``OverflowError`` beyond float32 range)."""
        n = len(values)
        return cls(struct.pack(f">HH{n}f", n, 0, *values))


class _BinaryVectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: BinaryVector) -> bytes:
        return obj.data


# Global, but for a private class: no other type's adaptation changes. The parameter's
# type is inferred from its ``::vector`` cast, so no OID lookup is needed.
psycopg.adapters.register_dumper(BinaryVector, _BinaryVectorDumper)


def vector_param(
    embedding: Sequence[float] | BinaryVector, dimension: int, table: str
) -> BinaryVector:
    """``embedding`` checked against ``table``'s ``dimension`` and packed."""
    if isinstance(embedding, BinaryVector):
        # Packed by a caller that has checked the values (SemanticCache does).
        if embedding.dimension != dimension:
            raise ConfigurationError(
                f"embedding has {embedding.dimension} dimensions, the table "
                f"{table} stores {dimension}"
            )
        return embedding
    if len(embedding) != dimension:
        raise ConfigurationError(
            f"embedding has {len(embedding)} dimensions, the table {table} stores {dimension}"
        )
    try:
        values = [float(x) for x in embedding]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError("embedding contains a value that is not a number") from exc
    if not all(map(math.isfinite, values)):
        raise ConfigurationError("embedding contains NaN or infinity")
    try:
        return BinaryVector.pack(values)
    except OverflowError as exc:
        raise ConfigurationError("embedding holds a value beyond float32 range") from exc
