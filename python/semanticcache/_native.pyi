"""Typed stubs for the Rust extension ``semanticcache._native``.

Private: import what you need from ``semanticcache`` instead. Every function here has a
plain-Python reference in ``tests/native/`` (``ref_*.py``) that property tests hold it to.
Errors are the classes of :mod:`semanticcache.errors`.
"""

from typing import Final, Self, final

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ScanResult",
    "SseEvent",
    "StreamTee",
    "__version__",
    "assemble_chat_completion",
    "canonical_json",
    "hmac_sha256",
    "hmac_sha256_hex",
    "parse_sse",
    "render_chat_completion_sse",
    "scan_request",
]

__version__: Final[str]

DEFAULT_MAX_DEPTH: Final[int]
"""Nesting bound of :func:`scan_request` and :func:`canonical_json`: 128 levels of
objects + arrays, the top-level container being level 1."""

DEFAULT_MAX_BYTES: Final[int]
"""Input size bound of :func:`scan_request` and :func:`canonical_json` (10 MiB)."""

# --- request body scan -----------------------------------------------------------------

@final
class ScanResult:
    """What the cache needs from one JSON request body, found in one pass.

    Digests are 32-byte BLAKE3 hashes of canonical JSON (see docs/native.md); two bodies
    that differ only in key order, insignificant white space, string escapes or number
    spelling (``1`` / ``1.0`` / ``1e0``) scan alike. The cache key (``model``,
    ``params_digest``, ``context_digest``, ``query``) drops nothing else from the body
    but a boolean ``stream``.
    """

    @property
    def query(self) -> str | None:
        """The lookup text: the latest user turn, or ``query`` / ``prompt`` / ``input``.

        Text parts (strings, and ``text`` / ``input_text`` / ``output_text`` blocks) are
        joined with ``"\\n"``. ``None`` when the lookup field is absent or has no text to
        match (for example the last message is not a user turn); the request can then
        only be matched exactly.
        """

    @property
    def query_field(self) -> str | None:
        """The lookup field: the first present of ``query``, ``prompt``, ``input``,
        ``messages`` (in that priority order); ``None`` when none of them is present.
        The others, when present, are ordinary parameters."""

    @property
    def model(self) -> str | None:
        """Top-level ``model`` when it is a string."""

    @property
    def stream(self) -> bool | None:
        """Top-level ``stream`` when it is a boolean."""

    @property
    def params_digest(self) -> bytes:
        """Digest of the object of every other top-level member (not the lookup field,
        ``system``, a string ``model`` or a boolean ``stream``)."""

    @property
    def context_digest(self) -> bytes:
        """Digest of ``[query_field, system, lookup value with its query text taken
        out]``: the system prompt, the earlier turns, and the latest turn minus its text."""

    @property
    def turns(self) -> list[tuple[str, str]]:
        """Role-tagged text of the conversation, oldest first, ``system`` first when given.

        Built on first access only (the scan keeps offsets into the body, not text).
        Each turn's text is its text parts joined with ``"\\n"``, or ``""``.
        """

def scan_request(body: bytes, *, max_depth: int = ..., max_bytes: int = ...) -> ScanResult:
    """Scan a JSON request body in one pass.

    Raises :class:`~semanticcache.errors.RequestBodyError` (``kind``, byte ``offset``)
    for a body over ``max_bytes`` (checked first), invalid UTF-8, invalid JSON (RFC 8259
    strict), a lone surrogate escape, nesting deeper than ``max_depth``, a duplicate key
    in any object, or a top level that is not an object. ``ValueError`` when a limit is
    below 1. Releases the GIL for bodies over 64 KiB.
    """

def canonical_json(body: bytes, *, max_depth: int = ..., max_bytes: int = ...) -> bytes:
    """The canonical form of any JSON document (keys sorted by code point, minimal
    escapes, numbers as ``0`` or ``[-]<digits>e<exp>``, no white space), with the same
    errors as :func:`scan_request` except that any top-level value is accepted."""

# --- keyed digests for log fields ------------------------------------------------------

def hmac_sha256(key: bytes, data: bytes | str) -> bytes:
    """HMAC-SHA256 of ``data`` (``str`` is encoded as UTF-8) under ``key``.

    Any key length works (RFC 2104: keys over 64 bytes are hashed first). A ``str`` with a
    lone surrogate raises ``UnicodeEncodeError``; other types raise ``TypeError``.
    Releases the GIL for inputs over 64 KiB.
    """

def hmac_sha256_hex(key: bytes, data: bytes | str, length: int = 64) -> str:
    """Lowercase hex HMAC-SHA256, cut to the first ``length`` hex digits.

    Raises ``ValueError`` unless ``1 <= length <= 64``.
    """

# --- streaming tee buffer and Server-Sent Events ---------------------------------------

@final
class SseEvent:
    """One dispatched Server-Sent Event (see docs/streaming.md for the parsing rules)."""

    @property
    def event(self) -> str:
        """Event type; ``"message"`` when the block had no (or an empty) ``event`` field."""

    @property
    def data(self) -> str:
        """Data lines joined with ``\\n``."""

    @property
    def id(self) -> str | None:
        """The block's last ``id`` field without a NUL; ``None`` if it had none.

        Unlike a browser's ``lastEventId`` it does not carry over to later events, so an
        event can be sent again as it came.
        """

    @property
    def retry(self) -> int | None:
        """The block's last ``retry`` field made of ASCII digits (fitting in 64 bits)."""

@final
class StreamTee:
    """Copies a response body as it is forwarded, up to ``max_bytes``.

    ``push`` never blocks and never raises on size: the first chunk that would pass the
    cap sets ``overflowed`` and nothing more is copied (no partial copy: the stored body
    is all or nothing). When ``sse`` is true it also parses the stream as Server-Sent
    Events across arbitrary chunk boundaries and tracks how the stream ended; parsing
    stops at the cap too, so memory stays bounded by ``max_bytes``.

    Not thread-safe: meant for the one task that forwards a response (concurrent use from
    several threads raises instead of corrupting state).
    """

    def __new__(cls, max_bytes: int, *, sse: bool = False) -> Self:
        """``ValueError`` when ``max_bytes`` is negative."""

    def push(self, chunk: bytes) -> bool:
        """Copy (and parse) one chunk; ``False`` once the cap has been passed.

        Raises ``ValueError`` after :meth:`close`. Releases the GIL for chunks over 64 KiB.
        """

    def close(self) -> None:
        """Mark the end of the body (an unterminated trailing event is discarded and
        makes the stream ``truncated`` unless it was already ``done``). Idempotent."""

    @property
    def overflowed(self) -> bool: ...
    @property
    def nbytes(self) -> int:
        """Bytes pushed so far, including those not copied after an overflow."""

    @property
    def end_state(self) -> str:
        """How the event stream ended: ``"open"`` (not closed yet), ``"done"`` (a
        ``data: [DONE]`` event), ``"finished"`` (every choice index seen sent a non-null
        finish_reason, no [DONE]), ``"error"`` (an ``error`` event, or a data object with a
        non-null top-level ``error``), ``"truncated"`` (closed otherwise, including an
        unterminated trailing event or a passed cap), or ``"not_sse"`` when ``sse`` is
        false. The first of ``done`` / ``error`` wins; later events do not change it."""

    @property
    def complete(self) -> bool:
        """Closed cleanly (``done`` or ``finished``) with nothing lost to the cap."""

    def getvalue(self) -> bytes:
        """The copied bytes: the whole body, or ``b""`` once ``overflowed``."""

    def events(self) -> list[SseEvent]:
        """Events dispatched so far (empty when ``sse`` is false)."""

    def assemble_chat_completion(self) -> bytes:
        """The non-streaming ``chat.completion`` JSON equivalent to the copied stream.

        Raises :class:`~semanticcache.errors.StreamFormatError` when the stream is not
        complete (kind ``not_complete``) or its chunks are not OpenAI
        ``chat.completion.chunk`` objects (``no_chunks``, ``not_json``, ``bad_chunk``,
        ``mixed_ids``).
        """

def parse_sse(data: bytes) -> list[SseEvent]:
    """Parse a whole Server-Sent Events body (an unterminated last event is dropped)."""

def assemble_chat_completion(sse_body: bytes) -> bytes:
    """Assemble a complete OpenAI chat-completion SSE body into the equivalent
    non-streaming completion JSON (bytes, keys sorted).

    Only ``message`` events up to ``data: [DONE]`` count. Raises ``StreamFormatError``
    with kind ``not_complete``, ``no_chunks``, ``not_json``, ``bad_chunk`` or
    ``mixed_ids`` (``offset``: the byte where the offending event starts).
    """

def render_chat_completion_sse(completion: bytes, *, include_usage: bool = False) -> bytes:
    """Render a stored ``chat.completion`` JSON as the SSE body an OpenAI server would
    stream for it, ending with ``data: [DONE]``; ``assemble_chat_completion`` of the
    result gives the completion back (without ``usage`` unless ``include_usage``).

    Raises ``StreamFormatError`` with kind ``not_json`` or ``bad_completion``.
    """
