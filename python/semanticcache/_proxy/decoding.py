"""Undoing a response's ``Content-Encoding`` (gzip, deflate), streaming, in bounded pieces.

The forwarder decodes only responses the middleware may store that came compressed
although identity was asked for: stored bytes are replayed without Content-Encoding.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["DecodeChain", "content_codings", "decodable"]

# A decoded body is produced in pieces of at most this size (no decompression bomb held
# in memory at once).
_DECODE_PIECE: Final = 64 * 1024
_ZLIB_DEFLATE: Final = 8
# What can be undone. Others (br, zstd, ...) pass through with their header, and the
# middleware's store policy refuses them.
_DECODABLE: Final = frozenset({"gzip", "x-gzip", "deflate"})


class _ZlibDecoder:
    """gzip (``wbits`` auto-detects the gzip or zlib wrapper) or deflate, in bounded pieces.

    ``deflate`` is the zlib format by the RFC, but some servers send raw deflate: the
    first byte tells them apart (a zlib header's compression-method nibble is 8).
    """

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._inner: zlib._Decompress | None = None

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        if self._inner is None:
            raw = self._coding == "deflate" and data[0] & 0x0F != _ZLIB_DEFLATE
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS | 32)
        inner = self._inner
        while data:
            piece = inner.decompress(data, _DECODE_PIECE)
            if piece:
                yield piece
            data = inner.unconsumed_tail

    def flush(self) -> bytes:
        return b"" if self._inner is None else self._inner.flush()


class DecodeChain:
    """The decoders of a ``Content-Encoding`` list, the last coding undone first (none:
    the data passes as it is)."""

    def __init__(self, codings: list[str]) -> None:
        self._decoders = [_ZlibDecoder(c) for c in reversed(codings)]

    def decode(self, data: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((data,))
        for decoder in self._decoders:
            pieces = _decode_all(decoder, pieces)
        return pieces

    def flush(self) -> list[bytes]:
        pieces: list[bytes] = []
        for decoder in self._decoders:
            pieces = [out for p in pieces for out in decoder.decode(p)]
            tail = decoder.flush()
            if tail:
                pieces.append(tail)
        return pieces


def _decode_all(decoder: _ZlibDecoder, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


def content_codings(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The codings a message's ``Content-Encoding`` fields list, in order (``identity``
    left out); ``headers`` are (lower-case name, value) pairs."""
    codings = [
        token.strip().lower()
        for name, value in headers
        if name == "content-encoding"
        for token in value.split(",")
    ]
    return [c for c in codings if c and c != "identity"]


def decodable(codings: list[str]) -> bool:
    """Whether ``codings`` name at least one coding, all of which can be undone."""
    return bool(codings) and all(c in _DECODABLE for c in codings)
