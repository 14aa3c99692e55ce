"""Setting kinds: how one ``SEMANTIC_CACHE_*`` variable is parsed, checked and described.

A kind (:class:`Integer`, :class:`Real`, :class:`Choice`, ...) parses the variable's text,
checks a value (from the environment or a keyword argument) and describes its accepted
range for the configuration reference. Errors name the variable, the value and the range.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from semanticcache._masking import mask_connection_string
from semanticcache._redis_uri import parse_redis_nodes
from semanticcache.errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "Choice",
    "Flag",
    "Folder",
    "HttpUrl",
    "Integer",
    "Key",
    "Kind",
    "Names",
    "PgUri",
    "PgUris",
    "Real",
    "RedisTtl",
    "RedisUri",
    "Text",
    "Url",
    "UrlPath",
    "env_name",
    "error",
]

ENV_PREFIX: Final = "SEMANTIC_CACHE_"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_PG_URI_PREFIXES: Final = ("postgresql://", "postgres://")
# Where a list of Postgres URIs splits: a comma before the next URI's scheme (a comma
# inside one URI separates the hosts of a multi-host URI).
_NEXT_URI: Final = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_URI_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_REDIS_DB_PATH: Final = re.compile(r"/?(\d*)")
# RFC 9110 5.6.2 token: what header names and (RFC 6265) cookie names are made of.
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# An absolute URL path of RFC 3986 path characters (no query, fragment or white space).
_URL_PATH: Final = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)+")


def env_name(name: str) -> str:
    """The environment variable of the field ``name``."""
    return ENV_PREFIX + name.upper()


def error(env: str, problem: str, accepted: str) -> ConfigurationError:
    return ConfigurationError(f"{env} {problem}; accepted: {accepted}")


def _type_error(env: str, expected: str, value: object, accepted: str) -> ConfigurationError:
    return error(env, f"must be {expected}, got {type(value).__name__}", accepted)


class Kind:
    """How one setting is parsed from its variable, checked, and described in the docs.

    ``check`` gets the settings object (fields declared earlier are already checked) and
    returns the value normalised to the field's type.
    """

    type_name: str = "string"

    def parse(self, env: str, raw: str) -> object:
        return raw

    def check(self, env: str, value: object, owner: Any) -> object:
        raise NotImplementedError

    def describe(self) -> str:
        """The accepted values, for the configuration reference."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """A non-blank string; a ``secret`` one is never shown in an error."""

    required: bool = True
    secret: bool = False

    def accepted(self) -> str:
        return "a non-empty string" if self.required else "unset, or a non-empty string"

    def check(self, env: str, value: object, owner: Any) -> object:
        if not isinstance(value, str):
            raise _type_error(env, "a string", value, self.accepted())
        if not value.strip():
            shown = "" if self.secret else f": {value!r}"
            raise error(env, f"is blank{shown}", self.accepted())
        return value

    def describe(self) -> str:
        return self.accepted() + (" (a secret, never shown)" if self.secret else "")


@dataclass(frozen=True, slots=True)
class UrlPath(Kind):
    """An absolute URL path such as ``/metrics`` (no query string or fragment)."""

    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
        if not isinstance(value, str):
            raise _type_error(env, "a string", value, accepted)
        if not _URL_PATH.fullmatch(value):
            raise error(env, f"is not an absolute URL path: {value!r}", accepted)
        return value

    def describe(self) -> str:
        return "unset, or a path starting with `/` (no query string)"


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    """One of ``choices``, case-insensitive in the environment; ``unset_word`` there means
    ``None`` (the documented default spelled out)."""

    choices: tuple[str, ...]
    unset_word: str | None = None
    type_name = "choice"

    def parse(self, env: str, raw: str) -> object:
        lowered = raw.lower()
        return None if lowered == self.unset_word else lowered

    def accepted(self) -> str:
        return "one of " + ", ".join(self.choices)

    def check(self, env: str, value: object, owner: Any) -> object:
        if not isinstance(value, str) or value not in self.choices:
            raise error(env, f"is not a known value: {value!r}", self.accepted())
        return value

    def describe(self) -> str:
        unset = f" (or `{self.unset_word}` in the environment)" if self.unset_word else ""
        return self.accepted() + unset


@dataclass(frozen=True, slots=True)
class Flag(Kind):
    type_name = "boolean"

    def parse(self, env: str, raw: str) -> object:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise error(env, f"is not a boolean: {raw!r}", "1/0, true/false, yes/no, on/off")

    def check(self, env: str, value: object, owner: Any) -> object:
        if not isinstance(value, bool):
            raise error(env, "must be a boolean", "true or false")
        return value

    def describe(self) -> str:
        return "1/0, true/false, yes/no, on/off"


@dataclass(frozen=True, slots=True)
class Integer(Kind):
    """An integer in ``[low, high]``. ``floor`` names a field whose value times
    ``floor_factor`` raises ``low``; ``explain_floor`` says so in the error."""

    low: int
    high: int | None = None
    floor: str | None = None
    floor_factor: int = 1
    explain_floor: bool = False
    type_name = "integer"

    def parse(self, env: str, raw: str) -> object:
        try:
            return int(raw)
        except ValueError:
            raise error(env, f"is not an integer: {raw!r}", "a whole number") from None

    def accepted(self, low: int | str) -> str:
        if self.high is None:
            return f"an integer >= {low}"
        return f"an integer from {low} to {self.high}"

    def check(self, env: str, value: object, owner: Any) -> object:
        floor = self.floor_factor * getattr(owner, self.floor) if self.floor else self.low
        low = max(self.low, floor)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(env, "an integer", value, self.accepted(low))
        if self.explain_floor and self.floor and self.low <= value < floor:
            factor = f"{self.floor_factor} * " if self.floor_factor != 1 else ""
            below = f"below {factor}{env_name(self.floor)} ({floor})"
            raise error(env, f"is {value}, {below}", self.accepted(low))
        if value < low or (self.high is not None and value > self.high):
            raise error(env, f"is out of range: {value!r}", self.accepted(low))
        return value

    def describe(self) -> str:
        if self.floor is None:
            return self.accepted(self.low)
        factor = f"{self.floor_factor} * " if self.floor_factor != 1 else ""
        low = f"max({self.low}, {factor}{env_name(self.floor)})"
        return self.accepted(low)


@dataclass(frozen=True, slots=True)
class Real(Kind):
    """A finite number in ``[low, high]`` (``(low, high]`` when ``low_open``), stored as a
    float. ``floor`` names a field that replaces ``low``; ``{floor}`` in ``accepted`` shows
    its value."""

    low: float
    high: float
    accepted: str
    low_open: bool = False
    floor: str | None = None
    type_name = "number"

    def parse(self, env: str, raw: str) -> object:
        try:
            number = float(raw)
        except ValueError:
            raise error(env, f"is not a number: {raw!r}", "a decimal number") from None
        if not math.isfinite(number):
            raise error(env, f"is not a finite number: {raw!r}", "a decimal number")
        return number

    def check(self, env: str, value: object, owner: Any) -> object:
        low = float(getattr(owner, self.floor)) if self.floor else self.low
        accepted = self.accepted.format(floor=f" ({low})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(env, "a number", value, accepted)
        number = float(value)
        too_low = number <= low if self.low_open else number < low
        if not math.isfinite(number) or too_low or number > self.high:
            raise error(env, f"is out of range: {value!r}", accepted)
        return number

    def describe(self) -> str:
        return self.accepted.format(floor="")


@dataclass(frozen=True, slots=True)
class Names(Kind):
    """Comma-separated RFC 9110 tokens (header or cookie names), duplicates dropped."""

    lower: bool
    type_name = "list of names"

    def parse(self, env: str, raw: str) -> object:
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
        if isinstance(value, str) or not isinstance(value, tuple | list | frozenset | set):
            raise _type_error(env, "a tuple of names", value, accepted)
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or not _TOKEN.fullmatch(item):
                raise error(env, f"is not a valid name: {item!r}", accepted)
            item = item.lower() if self.lower else item
            if item not in out:
                out.append(item)
        return tuple(out)

    def describe(self) -> str:
        return "unset, or comma-separated names (letters, digits, !#$%&'*+.^_`|~-)"


@dataclass(frozen=True, slots=True)
class Key(Kind):
    """A secret key of at least ``min_bytes`` (UTF-8 in the environment); errors state its
    length, never its content."""

    min_bytes: int
    type_name = "secret"

    def parse(self, env: str, raw: str) -> object:
        return raw.encode("utf-8")

    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
        if not isinstance(value, bytes):
            raise _type_error(env, "bytes", value, accepted)
        if len(value) < self.min_bytes:
            raise error(env, f"is too short ({len(value)} bytes)", accepted)
        return value

    def describe(self) -> str:
        return f"unset, or at least {self.min_bytes} bytes"


@dataclass(frozen=True, slots=True)
class Folder(Kind):
    type_name = "path"

    def parse(self, env: str, raw: str) -> object:
        return Path(raw).expanduser()

    def check(self, env: str, value: object, owner: Any) -> object:
        if not isinstance(value, str | os.PathLike):
            raise error(env, "must be a path", self.describe())
        return Path(value)

    def describe(self) -> str:
        return "unset, or a folder"


class Url(Kind):
    """A connection string or URL: masked in errors and in :meth:`CacheSettings.redacted`."""

    type_name = "URL"

    def _masked(self, env: str, value: object) -> tuple[str, str]:
        """``value`` as a string, and as shown in errors (credentials masked)."""
        if not isinstance(value, str):
            raise _type_error(env, "a string", value, self.describe())
        return value, mask_connection_string(value)

    def masked(self, value: object) -> object:
        """``value`` as :meth:`CacheSettings.redacted` shows it (credentials masked)."""
        assert isinstance(value, str)
        return mask_connection_string(value)

    def _split(self, env: str, value: object) -> tuple[SplitResult, int | None, str]:
        """``value`` split, its port (checked), and ``value`` as shown in errors."""
        text, shown = self._masked(env, value)
        try:
            parts = urlsplit(text)
            port = parts.port  # raises ValueError for a non-numeric or out-of-range port
        except ValueError:
            raise error(env, f"cannot be parsed: {shown!r}", self.describe()) from None
        return parts, port, shown


@dataclass(frozen=True, slots=True)
class PgUri(Url):
    type_name = "connection string"

    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
        value, shown = self._masked(env, value)
        is_uri = value.startswith(_PG_URI_PREFIXES)
        if not value.strip() or (not is_uri and (_URI_SCHEME.match(value) or "=" not in value)):
            raise error(env, f"is not a Postgres connection string: {shown!r}", accepted)
        try:
            params = conninfo_to_dict(value)
        except ProgrammingError as exc:
            # libpq's messages quote the input, password included: pass on only the one
            # kind that names a keyword and nothing else.
            reason = str(exc).strip()
            detail = f" ({reason})" if reason.startswith("invalid connection option") else ""
            raise error(env, f"cannot be parsed{detail}: {shown!r}", accepted) from None
        for port in str(params.get("port", "")).split(","):
            if port and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise error(env, f"has an invalid port {port!r}: {shown!r}", accepted)
        return value

    def describe(self) -> str:
        return "a postgresql:// or postgres:// URI, or a libpq key=value string"


@dataclass(frozen=True, slots=True)
class PgUris(Url):
    """One or more Postgres URIs, comma-separated (a single one may be a key=value
    string), each checked as :class:`PgUri`; duplicates dropped."""

    type_name = "connection strings"

    def parse(self, env: str, raw: str) -> object:
        return tuple(part.strip() for part in _NEXT_URI.split(raw))

    def check(self, env: str, value: object, owner: Any) -> object:
        if not isinstance(value, tuple | list):
            raise _type_error(env, "a tuple of connection strings", value, self.describe())
        out: list[str] = []
        for item in value:
            if isinstance(item, str) and not item.strip():
                raise error(env, "has an empty connection string", self.describe())
            checked = PgUri().check(env, item, owner)
            assert isinstance(checked, str)
            if checked not in out:
                out.append(checked)
        return tuple(out)

    def masked(self, value: object) -> object:
        assert isinstance(value, tuple)
        return tuple(mask_connection_string(item) for item in value)

    def describe(self) -> str:
        return (
            "unset, or postgresql:// or postgres:// URIs separated by commas "
            "(one may be a libpq key=value string)"
        )


@dataclass(frozen=True, slots=True)
class RedisUri(Url):
    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
        text, shown = self._masked(env, value)
        try:
            nodes = parse_redis_nodes(text)
        except ValueError as exc:
            raise error(env, f"{exc}: {shown!r}", accepted) from None
        if nodes is not None:
            return value
        parts, port, shown = self._split(env, value)
        if parts.scheme not in _REDIS_SCHEMES:
            raise error(env, f"has an unsupported scheme: {shown!r}", accepted)
        if parts.scheme == "unix":
            if not parts.path.strip("/"):
                raise error(env, f"has no socket path: {shown!r}", accepted)
            return value
        if not parts.hostname:
            raise error(env, f"has no host: {shown!r}", accepted)
        if port == 0 or not _REDIS_DB_PATH.fullmatch(parts.path):
            raise error(env, f"has an invalid port or database number: {shown!r}", accepted)
        return value

    def describe(self) -> str:
        return (
            "a redis://, rediss:// or unix:// URI, or a list of host:port in a "
            "redis+cluster://, rediss+cluster:// or redis+sentinel:// URI"
        )


@dataclass(frozen=True, slots=True)
class HttpUrl(Url):
    def check(self, env: str, value: object, owner: Any) -> object:
        parts, _, shown = self._split(env, value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise error(env, f"is not an http(s) URL: {shown!r}", self.describe())
        return value

    def describe(self) -> str:
        return "an http:// or https:// URL with a host"


@dataclass(frozen=True, slots=True)
class RedisTtl(Integer):
    """Redis blob TTL: never longer than the Postgres TTL, or a blob would be served after
    Postgres expired its row."""

    def check(self, env: str, value: object, owner: Any) -> object:
        ttl = Integer.check(self, env, value, owner)
        pg_seconds: int | None = owner._pg_ttl_seconds()
        if pg_seconds is not None and isinstance(ttl, int) and ttl > pg_seconds:
            raise error(
                env,
                f"is {ttl}, longer than {env_name('pg_ttl_days')} ({pg_seconds} s)",
                f"an integer from 1 to {pg_seconds}",
            )
        return ttl

    def describe(self) -> str:
        return f"an integer >= 1, at most {env_name('pg_ttl_days')} in seconds"
