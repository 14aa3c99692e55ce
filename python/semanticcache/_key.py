"""Lookup keys: the exact partition a semantic match must stay inside, plus the lookup text.

A :class:`CacheKey` names everything that must match *exactly* for a cached response to
be served (scope, route, model, generation parameters, conversation context) and the text
that may match *semantically*. The exact part is folded into one 32-byte partition digest:
BLAKE2b-256 (personalised ``semcache:part:v1``) over a length-prefixed encoding of the
five fields, so no choice of field values can make two different keys encode alike
(``("ab", "c")`` and ``("a", "bc")`` differ). The store filters semantic searches on that
digest with an SQL equality, so isolation never depends on embedding distance.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from semanticcache._layout import layout
from semanticcache.errors import ConfigurationError

if TYPE_CHECKING:
    from semanticcache._native import ScanResult

__all__ = [
    "MAX_SCOPE_BYTES",
    "CacheKey",
    "db_text",
    "lookup_digest",
    "normalize_lookup_text",
    "partition_digest",
    "route_target",
]

MAX_SCOPE_BYTES: Final = 1024
"""Longest scope (UTF-8 bytes): it is a btree-indexed column, for purge and stats."""

_PARTITION_PERSON: Final = b"semcache:part:v1"
_TEXT_PERSON: Final = b"semcache:text:v1"


def normalize_lookup_text(text: str) -> str:
    """The form an exact match compares: Unicode NFC; in prose, white-space runs as one
    space, no leading or trailing white space. Code (fenced blocks, and paragraphs with
    indented lines) keeps its line breaks and indentation, less each line's trailing
    white space. Case is kept (it can change an answer). Linear in the text's length."""
    return layout(unicodedata.normalize("NFC", text)).normalized


def lookup_digest(text: str) -> bytes:
    """The 32-byte digest of a lookup text's normalized form (exact-match key).

    Lone surrogates are hashed as they are (``surrogatepass``), so no ``str`` raises.
    """
    data = normalize_lookup_text(text).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=32, person=_TEXT_PERSON).digest()


def partition_digest(
    *,
    scope: str = "",
    route: str = "",
    model: str | None = None,
    params_digest: bytes = b"",
    context_digest: bytes = b"",
) -> bytes:
    """The 32-byte partition digest of these exact-match fields (see the module doc).

    A missing model (``None``) and an empty model name (``""``) partition apart.
    """
    h = hashlib.blake2b(digest_size=32, person=_PARTITION_PERSON)
    model_part = b"" if model is None else b"=" + model.encode("utf-8", "surrogatepass")
    for part in (
        scope.encode("utf-8", "surrogatepass"),
        route.encode("utf-8", "surrogatepass"),
        model_part,
        params_digest,
        context_digest,
    ):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def db_text(value: str) -> str:
    """``value`` as Postgres ``text`` can hold it: NUL and lone surrogates replaced.

    Used for the informational ``lookup_text`` and ``scope`` columns only; digests are
    computed from the original string.
    """
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def route_target(route: str) -> str:
    """The route a purge selects by: ``route`` less the ``Vary`` values the middleware
    adds to it (a JSON array ``[target, pairs]``, see
    :func:`~semanticcache._middleware.headers.vary_route`), so that purging a route takes
    every variant of it; any other route as it is."""
    if not route.startswith("["):
        return route
    try:
        parsed = json.loads(route)
    except ValueError:
        return route
    if isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[0], str):
        return parsed[0]
    return route


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What a lookup must match: exactly (the partition fields) and semantically (``text``).

    ``scope`` isolates tenants (derive it server-side from authenticated identity, never
    from client-supplied fields); ``route`` is the normalized path; ``model`` the model
    name; ``params_digest`` and ``context_digest`` digest the generation parameters and
    the conversation around the latest turn (the native scan computes both). Empty values
    are fine: a single-tenant cache uses ``scope=""``.
    """

    text: str
    """The lookup text: embedded for semantic matching, normalized for exact matching."""
    scope: str = ""
    """Tenant or isolation scope; also stored as a column for purge and stats."""
    route: str = ""
    """Normalized route (path) the response belongs to."""
    model: str | None = None
    """Model name, ``None`` when the request names none."""
    params_digest: bytes = b""
    """Digest of the generation parameters that change the answer."""
    context_digest: bytes = b""
    """Digest of the system prompt and earlier turns."""
    partition: bytes = field(init=False, repr=False, compare=False)
    """The 32-byte partition digest of the fields above (computed once)."""
    text_digest: bytes = field(init=False, repr=False, compare=False)
    """:func:`lookup_digest` of :attr:`text` (computed once)."""

    def __post_init__(self) -> None:
        for name in ("text", "scope", "route"):
            if not isinstance(getattr(self, name), str):
                raise ConfigurationError(f"CacheKey.{name} must be a str")
        if self.model is not None and not isinstance(self.model, str):
            raise ConfigurationError("CacheKey.model must be a str or None")
        for name in ("params_digest", "context_digest"):
            if not isinstance(getattr(self, name), bytes):
                raise ConfigurationError(f"CacheKey.{name} must be bytes")
        scope_bytes = len(self.scope.encode("utf-8", "surrogatepass"))
        if scope_bytes > MAX_SCOPE_BYTES:
            raise ConfigurationError(
                f"CacheKey.scope is {scope_bytes} bytes; accepted: at most {MAX_SCOPE_BYTES}"
            )
        object.__setattr__(
            self,
            "partition",
            partition_digest(
                scope=self.scope,
                route=self.route,
                model=self.model,
                params_digest=self.params_digest,
                context_digest=self.context_digest,
            ),
        )
        object.__setattr__(self, "text_digest", lookup_digest(self.text))

    @classmethod
    def from_scan(cls, scan: ScanResult, *, scope: str = "", route: str = "") -> CacheKey | None:
        """The key of a scanned request body; ``None`` when it has no lookup text."""
        if scan.query is None:
            return None
        return cls(
            text=scan.query,
            scope=scope,
            route=route,
            model=scan.model,
            params_digest=scan.params_digest,
            context_digest=scan.context_digest,
        )
