"""The stored form of a response: a small JSON header, then the body bytes as they were.

Layout (version 1)::

    b"SCR1" | header length (4 bytes, big endian) | header JSON (UTF-8) | body

The header is ``{"s": status, "h": [[name, value], ...], "sse": bool}``; header names are
lower-case latin-1 text as ASGI carries them. The body is kept byte for byte (no
re-encoding), so a hit replays exactly what the app sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

__all__ = ["StoredResponse", "decode_record", "encode_record"]

_MAGIC: Final = b"SCR1"
_HEADER_LEN_BYTES: Final = 4
# A header bigger than this is not one we wrote: refuse it rather than parse megabytes.
_MAX_HEADER_BYTES: Final = 1 << 20
# Valid decoded headers by their bytes: an app's entries share a few header sets, so a
# hit need not parse its JSON again. Headers up to this size are kept, this many at most.
_MEMO_HEADER_BYTES: Final = 1024
_MEMO_SIZE: Final = 256
_Header = tuple[int, tuple[tuple[bytes, bytes], ...], bool]
_decoded: dict[bytes, _Header] = {}


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One cached response as the middleware stores and replays it."""

    status: int
    """HTTP status code."""
    headers: tuple[tuple[bytes, bytes], ...]
    """Replayable headers (already filtered: no hop-by-hop, cookies, auth, length)."""
    body: bytes
    """The body, byte for byte."""
    sse: bool
    """Whether the body is a Server-Sent Events stream."""

    @property
    def content_type(self) -> bytes:
        """The ``content-type`` header value, or ``b""``."""
        for name, value in self.headers:
            if name == b"content-type":
                return value
        return b""


def encode_record(response: StoredResponse) -> bytes:
    """The stored bytes of ``response``."""
    header = json.dumps(
        {
            "s": response.status,
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in response.headers],
            "sse": response.sse,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return b"".join((_MAGIC, len(header).to_bytes(_HEADER_LEN_BYTES, "big"), header, response.body))


def decode_record(data: bytes) -> StoredResponse | None:
    """The response stored in ``data``; ``None`` when ``data`` is not a valid record
    (written by something else, or damaged): the caller treats that as a miss."""
    start = len(_MAGIC) + _HEADER_LEN_BYTES
    if len(data) < start or not data.startswith(_MAGIC):
        return None
    size = int.from_bytes(data[len(_MAGIC) : start], "big")
    if size > _MAX_HEADER_BYTES or start + size > len(data):
        return None
    raw = data[start : start + size]
    memo = size <= _MEMO_HEADER_BYTES
    decoded = _decoded.get(raw) if memo else None
    if decoded is None:
        decoded = _decode_header(raw)
        if decoded is None:
            return None
        if memo:
            if len(_decoded) >= _MEMO_SIZE:
                _decoded.clear()
            _decoded[raw] = decoded
    status, headers, sse = decoded
    return StoredResponse(status, headers, data[start + size :], sse)


def _decode_header(raw: bytes) -> _Header | None:
    """Status, headers and SSE flag of a record's JSON header; ``None`` when invalid."""
    try:
        header = json.loads(raw)
        status = header["s"]
        raw_headers = header["h"]
        sse = header["sse"]
        if (
            isinstance(status, bool)
            or not isinstance(status, int)
            or not 100 <= status <= 599
            or not isinstance(sse, bool)
            or not isinstance(raw_headers, list)
        ):
            return None
        headers = tuple(
            (str(n).encode("latin-1"), str(v).encode("latin-1"))
            for n, v in raw_headers  # each must be a pair
        )
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        return None
    return status, headers, sse
