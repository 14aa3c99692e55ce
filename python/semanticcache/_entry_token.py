"""The opaque id of a cache entry that a hit's ``X-Cache-Entry`` header carries.

The row id (a Postgres identity column) is never shown: it counts up, so one id would
tell a client the ids of every other entry, other scopes' included. The token is the
id passed through a keyed 64-bit permutation (a four-round Feistel network whose round
function is keyed BLAKE2b over the table name), followed by a 64-bit keyed BLAKE2b tag
of the table and the permuted id. The BLAKE2b key is derived from the configured key
with HMAC-SHA256 (once per key), so the configured key may be of any length. Without
the key a token can be neither read nor made; with it (:func:`entry_id_of`) the server
gets the id back, so a token can name the entry in a later request. The key is the log
digest key: set ``SEMANTIC_CACHE_LOG_DIGEST_KEY`` for tokens that workers and restarts
share.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Final

__all__ = ["entry_id_of", "entry_token"]

_PERSON: Final = b"semcache:entry:v1"
_ROUNDS: Final = 4
_MASK32: Final = 0xFFFFFFFF
_TOKEN_HEX: Final = 32


@functools.lru_cache(maxsize=8)
def _subkey(key: bytes) -> bytes:
    return hmac.digest(key, _PERSON, "sha256")


def _round(key: bytes, table: bytes, index: int, half: int) -> int:
    message = table + b"\x00" + bytes((index,)) + half.to_bytes(4, "big")
    mac = hashlib.blake2b(message, digest_size=4, key=key, person=b"semcache:entry:r")
    return int.from_bytes(mac.digest(), "big")


def _tag(key: bytes, table: bytes, block: bytes) -> bytes:
    mac = hashlib.blake2b(
        table + b"\x00" + block, digest_size=8, key=key, person=b"semcache:entry:t"
    )
    return mac.digest()


def entry_token(key: bytes, table: str, entry_id: int) -> str:
    """The token (32 lower-case hex digits) of entry ``entry_id`` of ``table``."""
    if not 0 <= entry_id <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError("entry ids are 64-bit unsigned")
    key = _subkey(key)
    name = table.encode("utf-8")
    left, right = entry_id >> 32, entry_id & _MASK32
    for index in range(_ROUNDS):
        left, right = right, left ^ _round(key, name, index, right)
    block = ((left << 32) | right).to_bytes(8, "big")
    return (block + _tag(key, name, block)).hex()


def entry_id_of(key: bytes, table: str, token: str) -> int | None:
    """The entry id a token made by :func:`entry_token` names; ``None`` for anything
    else (malformed, another key or another table)."""
    if len(token) != _TOKEN_HEX:
        return None
    try:
        raw = bytes.fromhex(token)
    except ValueError:
        return None
    block, tag = raw[:8], raw[8:]
    key = _subkey(key)
    name = table.encode("utf-8")
    if not hmac.compare_digest(tag, _tag(key, name, block)):
        return None
    value = int.from_bytes(block, "big")
    left, right = value >> 32, value & _MASK32
    for index in reversed(range(_ROUNDS)):
        left, right = right ^ _round(key, name, index, left), left
    return (left << 32) | right
