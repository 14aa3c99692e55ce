"""A raw HTTP/1.1 client for hostile-input tests: it sends exactly the bytes it is given
(lying ``Content-Length``, invalid UTF-8, bodies in slow pieces), which no real client
library does, and reads one response until the server closes the connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["RawResponse", "chunked", "request_head", "send_raw"]


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name.lower()), None)


def request_head(
    path: str, *, content_length: int | None = None, extra: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A POST head (``Connection: close``) with the given ``Content-Length`` (``None``:
    ``Transfer-Encoding: chunked``)."""
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Connection: close"]
    lines.append("Content-Type: application/json")
    if content_length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {content_length}")
    lines += [f"{n}: {v}" for n, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(pieces: Sequence[bytes]) -> list[bytes]:
    """``pieces`` framed as HTTP chunks, the last-chunk marker last."""
    return [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces if p] + [b"0\r\n\r\n"]


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


async def send_raw(
    base_url: str,
    parts: Sequence[bytes],
    *,
    delay: float = 0.0,
    close_after: bool = False,
    limit: float = 30.0,
) -> RawResponse | None:
    """Send ``parts`` (head included) with ``delay`` seconds between them; read the
    response until EOF. ``close_after``: close the connection right after the last part
    and return ``None`` (a client that gives up). ``limit``: seconds for it all."""
    url = urlsplit(base_url)
    assert url.hostname is not None
    assert url.port is not None

    async def exchange() -> RawResponse | None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            for i, part in enumerate(parts):
                if i and delay:
                    await asyncio.sleep(delay)
                writer.write(part)
                await writer.drain()
            if close_after:
                return None
            data = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [
            (n.strip().lower(), v.strip())
            for n, _, v in (line.partition(":") for line in lines[1:])
        ]
        if any(n == "transfer-encoding" and "chunked" in v.lower() for n, v in headers):
            body = _dechunk(body)
        return RawResponse(status, headers, body)

    return await asyncio.wait_for(exchange(), limit)
