"""Serving a hit: the stored response in the shape the client asked for (JSON or SSE),
with the headers a replay may carry."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

from starlette.types import Send

from semanticcache import _native
from semanticcache._cache import CacheHit
from semanticcache._middleware.headers import (
    DEFAULT_CREDENTIAL_HEADERS,
    HOP_BY_HOP,
    CacheControl,
    header_values,
    vary_names,
    with_header,
)
from semanticcache._middleware.record import decode_record
from semanticcache._settings import HitResponseMode
from semanticcache.errors import StreamFormatError

__all__ = ["JSON_TYPE", "fresh_enough", "replay", "replayable_headers"]

_log = logging.getLogger("semanticcache.middleware")

JSON_TYPE: Final = b"application/json"
_SSE_REPLAY_TYPE: Final = b"text/event-stream; charset=utf-8"

# What a replay must never carry: hop-by-hop fields, cookies and credentials (they belong
# to the first client; request credentials too, should a response echo one), the length
# (recomputed), and our own.
_NEVER_REPLAYED: Final = (
    HOP_BY_HOP
    | frozenset(DEFAULT_CREDENTIAL_HEADERS)
    | {
        b"set-cookie",
        b"set-cookie2",
        b"www-authenticate",
        b"authentication-info",
        b"content-length",
        b"date",
        b"age",
        b"x-cache",
        b"x-cache-similarity",
        b"x-cache-match",
        b"x-cache-entry",
    }
)


def replayable_headers(
    headers: Iterable[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()
) -> tuple[tuple[bytes, bytes], ...]:
    """The response headers a replay may carry (lower-case names); ``extra`` holds the
    configured credential headers."""
    # Fields the response's own Connection header names are hop-by-hop too.
    named = {
        token.strip().lower()
        for value in header_values(headers, b"connection")
        for token in value.split(b",")
    }
    return tuple(
        (n.lower(), v)
        for n, v in headers
        if n.lower() not in _NEVER_REPLAYED and n.lower() not in named | extra
    )


def fresh_enough(hit: CacheHit, control: CacheControl) -> bool:
    """Whether ``hit`` is within the request's ``max-age`` (if it gave one)."""
    return control.max_age is None or _age_seconds(hit) <= control.max_age


async def replay(
    hit: CacheHit,
    send: Send,
    *,
    stream: bool,
    vary: tuple[str, ...],
    mode: HitResponseMode,
    log_fields: Callable[[str | None], str],
    entry: bytes,
) -> bool:
    """Send ``hit`` in the shape the client asked for (``stream``); ``False`` when it
    cannot be (a damaged record, another variant than ``vary``, or a body that does not
    convert): the app answers then. ``entry``: the entry's token, sent as
    ``X-Cache-Entry``."""
    record = decode_record(hit.response)
    if record is None:
        _log.warning("semantic cache: unreadable entry %s", log_fields("bad_record"))
        return False
    if vary_names(record.headers) != vary:
        # Stored under other Vary names than this lookup keyed by: by construction it
        # cannot be, but a variant is served only to the values it was made for.
        _log.warning("semantic cache: entry of another variant %s", log_fields("vary"))
        return False
    body = record.body
    headers = list(record.headers)
    sse = record.sse
    try:
        if stream and not sse:
            body = _native.render_chat_completion_sse(body)
            sse = True
            headers = with_header(headers, b"content-type", _SSE_REPLAY_TYPE)
        elif not stream and sse:
            body = _native.assemble_chat_completion(body)
            sse = False
            headers = with_header(headers, b"content-type", JSON_TYPE)
    except StreamFormatError as exc:
        _log.info("semantic cache: hit not convertible %s", log_fields(exc.kind))
        return False
    headers += [
        (b"content-length", str(len(body)).encode()),
        (b"x-cache", b"HIT"),
        (b"x-cache-similarity", f"{hit.similarity:.4f}".encode()),
        (b"x-cache-match", hit.match.encode()),
        (b"x-cache-entry", entry),
        (b"age", str(int(_age_seconds(hit))).encode()),
    ]
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("semantic cache: hit %s", log_fields(hit.match))
    await send({"type": "http.response.start", "status": record.status, "headers": headers})
    if sse and mode == "stream":
        events = _split_events(body)
        for i, event in enumerate(events):
            last = i == len(events) - 1
            await send({"type": "http.response.body", "body": event, "more_body": not last})
    else:
        await send({"type": "http.response.body", "body": body, "more_body": False})
    return True


def _split_events(body: bytes) -> list[bytes]:
    """The SSE body cut after each blank line (one event per message)."""
    parts = re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", body)
    return [p for p in parts if p] or [b""]


def _age_seconds(hit: CacheHit) -> float:
    return max(0.0, (datetime.now(UTC) - hit.created_at).total_seconds())
