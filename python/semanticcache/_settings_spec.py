"""Setting declarations: one :func:`setting` per field, from which parsing, validation and
the configuration reference (:mod:`semanticcache._settings_doc`) are derived.

A field of :class:`~semanticcache.CacheSettings` is declared once, with its type
annotation, its default, a *kind* (:class:`Integer`, :class:`Real`, :class:`Choice`, ...)
that knows how to parse the variable's text, check a value and describe its accepted
range, and a line of documentation. :func:`check_fields` and :func:`parse_environ` walk
those declarations.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from semanticcache._masking import mask_connection_string
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
    "Real",
    "RedisUri",
    "Spec",
    "Text",
    "check_fields",
    "env_name",
    "parse_environ",
    "setting",
    "spec",
]

ENV_PREFIX: Final = "SEMANTIC_CACHE_"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_PG_URI_PREFIXES: Final = ("postgresql://", "postgres://")
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_URI_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_REDIS_DB_PATH: Final = re.compile(r"/?(\d*)")
# RFC 9110 5.6.2 token: what header names and (RFC 6265) cookie names are made of.
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METADATA_KEY: Final = "semanticcache.setting"


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


class _Url(Kind):
    """A connection string or URL: masked in errors and in :meth:`CacheSettings.redacted`."""

    type_name = "URL"

    def _masked(self, env: str, value: object) -> tuple[str, str]:
        """``value`` as a string, and as shown in errors (credentials masked)."""
        if not isinstance(value, str):
            raise _type_error(env, "a string", value, self.describe())
        return value, mask_connection_string(value)

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
class PgUri(_Url):
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
class RedisUri(_Url):
    def check(self, env: str, value: object, owner: Any) -> object:
        accepted = self.describe()
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
        return "a redis://, rediss:// or unix:// URI"


@dataclass(frozen=True, slots=True)
class HttpUrl(_Url):
    def check(self, env: str, value: object, owner: Any) -> object:
        parts, _, shown = self._split(env, value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise error(env, f"is not an http(s) URL: {shown!r}", self.describe())
        return value

    def describe(self) -> str:
        return "an http:// or https:// URL with a host"


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting's declaration beyond its name, type annotation and default."""

    kind: Kind
    doc: str
    fallback: str | None = None
    """A provider's own variable read when the ``SEMANTIC_CACHE_*`` one is unset."""
    default_doc: str | None = None
    """What the default means, where the value alone says too little."""

    @property
    def secret(self) -> bool:
        return isinstance(self.kind, Key) or (isinstance(self.kind, Text) and self.kind.secret)

    @property
    def url(self) -> bool:
        return isinstance(self.kind, _Url)


def setting[T](
    default: T,
    kind: Kind,
    doc: str,
    *,
    fallback: str | None = None,
    default_doc: str | None = None,
) -> T:
    """Declare a settings field: its default, kind and documentation."""
    declared = Spec(kind, doc, fallback, default_doc)
    return field(default=default, metadata={_METADATA_KEY: declared})


def spec(f: Field[Any]) -> Spec:
    declared = f.metadata[_METADATA_KEY]
    assert isinstance(declared, Spec)
    return declared


def check_fields(owner: Any) -> None:
    """Check every field of the dataclass instance ``owner`` in declaration order and store
    the normalised values (an int threshold becomes a float, so equal settings compare and
    hash equal however they were built). ``None`` is accepted where it is the default."""
    for f in fields(owner):
        value = getattr(owner, f.name)
        if value is None and f.default is None:
            continue
        object.__setattr__(owner, f.name, spec(f).kind.check(env_name(f.name), value, owner))


def parse_environ(cls: type, environ: Mapping[str, str]) -> dict[str, object]:
    """The keyword arguments for ``cls`` that ``environ`` sets: stripped, parsed by kind;
    empty variables count as unset."""
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        declared = spec(f)
        env = env_name(f.name)
        raw = environ.get(env)
        if (raw is None or not raw.strip()) and declared.fallback:
            raw = environ.get(declared.fallback)
        if raw is None or not raw.strip():
            continue
        kwargs[f.name] = declared.kind.parse(env, raw.strip())
    return kwargs
