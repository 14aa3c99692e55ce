"""Credential masking: connection strings and free text with their secrets replaced by ``***``.

Used wherever a connection string or URL may reach a log line, an error message or the
terminal (settings errors and reprs, the CLI, the proxy's upstream errors).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_connection_string"]

# Query parameters and key=value pairs whose value is a secret, by a word in their name.
_SECRET_QUERY_PARAM: Final = re.compile(
    r"([?&][^=&#\s]*(?:password|passwd|secret|token|key)[^=&#\s]*=)[^&#\s'\"]*", re.I
)
# Not after "?" or "&": a URI's query parameters are masked by _SECRET_QUERY_PARAM alone.
_SECRET_KEYWORD_VALUE: Final = re.compile(
    r"((?<![?&])\b(?:ssl)?(?:password|passwd|secret|token|api_?key)\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'?|\S*)",
    re.I,
)
_URI_TOKEN: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://([^\s'\"]*)")
_WORD: Final = re.compile(r"[^\s'\"]+")


def mask_connection_string(value: str) -> str:
    """``value`` with every credential in it replaced by ``***``.

    ``value`` is a connection string or any text that may hold some (an error message,
    an argument list). Masked: a URI's password (``postgresql://user:***@host``) and,
    outside Postgres URIs, a user name alone (``redis://***@host``: a token in that place
    is a secret), whatever lies between ``://`` and the last ``@`` even when the URI
    does not parse; ``user:password@`` without a scheme; query parameters and
    ``key=value`` pairs named like a secret (``password``, ``sslpassword``, ``secret``,
    ``token``, ``key``, ``api_key``).
    """
    text = _SECRET_KEYWORD_VALUE.sub(r"\1***", value)
    text = _URI_TOKEN.sub(_mask_uri, text)
    text = _WORD.sub(_mask_user_info, text)
    return _SECRET_QUERY_PARAM.sub(r"\1***", text)


def _mask_uri(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    # The last "@" ends the user info even when the password holds an unescaped "@", "/"
    # or "?". An "@" later in the query can only make this mask too much, never too little.
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return match.group(0)
    if ":" in userinfo:
        userinfo = f"{userinfo.split(':', 1)[0]}:***"
    elif not scheme.lower().startswith("postgres"):
        userinfo = "***"  # a libpq user name is not a secret; elsewhere it may be a token
    return f"{scheme}://{userinfo}@{after}"


def _mask_user_info(match: re.Match[str]) -> str:
    # "user:password@host" outside a well-formed URI ("postgresql//u:pw@h", "u:pw@h").
    token = match.group(0)
    before, at, after = token.rpartition("@")
    if not at or "://" in token or ":" not in before:
        return token
    return f"{before.split(':', 1)[0]}:***@{after}"
