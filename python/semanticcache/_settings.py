"""Configuration: the ``SEMANTIC_CACHE_*`` environment variables, read once, validated once.

Settings are read at the edge only: :func:`get_cache_settings` (or
:meth:`CacheSettings.from_env`) turns the environment into a frozen :class:`CacheSettings`,
and every other class takes that object or explicit keyword arguments, never ``os.environ``.

Each setting is declared once, as a field with :func:`~semanticcache._settings_spec.setting`
(default, kind, range, doc); parsing, validation and docs/configuration.md derive from
those declarations. Every invalid value raises
:class:`~semanticcache.errors.ConfigurationError` with the variable's name, the value
(connection strings with their password masked, the digest key never) and the accepted
range. Empty variables count as unset, as container tooling writes ``NAME=`` for "no value".
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Literal, get_args

from semanticcache._masking import mask_connection_string
from semanticcache._settings_kinds import (
    ENV_PREFIX,
    Choice,
    Flag,
    Folder,
    HttpUrl,
    Integer,
    Key,
    Names,
    PgUri,
    PgUris,
    Real,
    RedisTtl,
    RedisUri,
    Text,
    UrlPath,
)
from semanticcache._settings_spec import check_fields, parse_environ, setting, spec

__all__ = [
    "ENV_PREFIX",
    "CacheSettings",
    "EmbedderType",
    "HitResponseMode",
    "PgPooler",
    "ResponseMode",
    "VerifierMode",
    "mask_connection_string",
]

EmbedderType = Literal["openai", "voyage", "cohere", "huggingface", "ollama", "local", "hashing"]
VerifierMode = Literal["auto", "on", "off"]
ResponseMode = Literal["buffered", "tee"]
HitResponseMode = Literal["single", "stream"]
PgPooler = Literal["none", "session", "transaction"]

# pgvector's `vector` type holds at most 16000 dimensions (and HNSW indexes 2000).
MAX_EMBEDDING_DIMENSIONS: Final = 16000
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
ADMIN_TOKEN_MIN_BYTES: Final = 16

# One random key per process, so digests of the same prompt still correlate across the log
# lines of one process when no key is configured.
_PROCESS_DIGEST_KEY: Final = secrets.token_bytes(32)

_DIMENSIONS: Final = Integer(1, MAX_EMBEDDING_DIMENSIONS)
_API_KEY: Final = Text(required=False, secret=True)
_TIMEOUT: Final = Real(0.0, math.inf, "unset, or seconds > 0", low_open=True)
_SDK_URL: Final = "unset (the SDK's)"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CacheSettings:
    """Validated cache configuration; one attribute per ``SEMANTIC_CACHE_*`` variable.

    Build it from the environment with :meth:`from_env` (or the shared
    :func:`get_cache_settings`), or with keyword arguments; both validate the same way and
    raise :class:`~semanticcache.errors.ConfigurationError`. ``repr`` masks passwords and
    leaves the digest key out. Fields are checked in declaration order, so a range that
    depends on another field comes after it.
    """

    pg_uri: str | None = setting(
        None,
        PgUri(),
        "Postgres connection string. Unset: the embedded development Postgres (needs the "
        "`embedded` extra; a loud warning says so).",
    )
    embedder_type: EmbedderType = setting(
        "local",
        Choice(get_args(EmbedderType)),
        "Built-in embedder that `get_embedder()` constructs: `local` (offline packaged "
        "model), `hashing` (zero-cost, not semantic), or a provider below.",
    )
    openai_model: str = setting("text-embedding-3-small", Text(), "OpenAI embedding model.")
    openai_dimensions: int | None = setting(
        None,
        _DIMENSIONS,
        "Shorter OpenAI vectors (`text-embedding-3-*` only).",
        default_doc="unset (the model's)",
    )
    openai_base_url: str | None = setting(
        None,
        HttpUrl(),
        "OpenAI-compatible API root (Azure, a gateway).",
        default_doc=_SDK_URL,
    )
    openai_api_key: str | None = setting(
        None, _API_KEY, "OpenAI API key.", fallback="OPENAI_API_KEY"
    )
    voyage_model: str = setting("voyage-3.5", Text(), "Voyage AI embedding model.")
    voyage_dimensions: int | None = setting(
        None,
        _DIMENSIONS,
        "Voyage output dimension (models that offer several).",
        default_doc="unset (the model's)",
    )
    voyage_base_url: str | None = setting(None, HttpUrl(), "Voyage API root.", default_doc=_SDK_URL)
    voyage_api_key: str | None = setting(
        None, _API_KEY, "Voyage API key.", fallback="VOYAGE_API_KEY"
    )
    cohere_model: str = setting("embed-v4.0", Text(), "Cohere embedding model.")
    cohere_dimensions: int | None = setting(
        None,
        _DIMENSIONS,
        "Cohere output dimension (`embed-v4.0`).",
        default_doc="unset (the model's)",
    )
    cohere_base_url: str | None = setting(None, HttpUrl(), "Cohere API root.", default_doc=_SDK_URL)
    cohere_api_key: str | None = setting(None, _API_KEY, "Cohere API key.", fallback="CO_API_KEY")
    huggingface_model: str | None = setting(
        None,
        Text(required=False),
        "sentence-transformers model name or folder.",
        default_doc="unset (the packaged all-MiniLM-L6-v2, nothing downloaded)",
    )
    huggingface_dimensions: int | None = setting(
        None,
        _DIMENSIONS,
        "Truncate sentence-transformers vectors to this length.",
        default_doc="unset (the model's)",
    )
    ollama_model: str = setting(
        "nomic-embed-text", Text(), "Ollama embedding model (`ollama pull` it first)."
    )
    ollama_dimensions: int | None = setting(
        None,
        _DIMENSIONS,
        "Ollama vector length; required for a model the package does not know.",
        default_doc="unset (the model's)",
    )
    ollama_base_url: str = setting(
        "http://127.0.0.1:11434/v1", HttpUrl(), "Ollama's OpenAI-compatible API root."
    )
    threshold: float = setting(
        0.95,
        Real(0.0, 1.0, "0.0 to 1.0"),
        "Cosine similarity a semantic hit needs when the verifier is off (with it on, "
        "`SEMANTIC_CACHE_VERIFIER_FLOOR` is the stage-1 gate).",
    )
    top_k_candidates: int = setting(
        1, Integer(*TOP_K_RANGE), "Nearest neighbours pgvector returns for stage 2."
    )
    rejection_threshold: float | None = setting(
        None,
        Real(0.0, 1.0, "unset, or from SEMANTIC_CACHE_THRESHOLD{floor} to 1.0", floor="threshold"),
        "Optional stricter stage-2 cutoff.",
    )
    agreement_check: bool = setting(
        True,
        Flag(),
        "Serve a semantic candidate only if its text agrees with the lookup's on numbers, "
        "negation, names, opposites, direction and code "
        "([cache.md](cache.md#retrieval)); a refused one is a miss with reason "
        "`disagreement`.",
    )
    verifier: VerifierMode = setting(
        "auto",
        Choice(get_args(VerifierMode)),
        "Stage 2, the trained pair classifier that decides whether a candidate wants the same "
        "answer ([cache.md](cache.md#stage-2-the-verifier)): `auto` is on with the `local` "
        "embedder or a `SEMANTIC_CACHE_VERIFIER_MODEL`, `on` behind any embedder (needs the "
        "`embed-local` packages), `off` serves on similarity alone.",
    )
    max_false_hit_rate: float = setting(
        0.01,
        Real(0.0, 0.5, "more than 0.0, at most 0.5", low_open=True),
        "The share of different-answer pairs the verifier may serve; picks its threshold "
        "from the packaged model's calibration table.",
    )
    verifier_threshold: float | None = setting(
        None,
        Real(0.0, 1.0, "unset, or more than 0.0 and at most 1.0", low_open=True),
        "The verifier's probability threshold, instead of the table's (what `semcache "
        "calibrate` measures on your pairs). Required with `SEMANTIC_CACHE_VERIFIER_MODEL`.",
    )
    verifier_floor: float | None = setting(
        None,
        Real(0.0, 1.0, "unset, or 0.0 to 1.0"),
        "Cosine similarity below which a candidate is not given to the verifier.",
        default_doc="unset (the packaged model's floor, fit with the `local` embedder)",
    )
    verifier_model: str | None = setting(
        None,
        Text(required=False),
        "A sentence-transformers cross-encoder (hub name or folder) to use instead of the "
        "packaged model; needs the `embed-huggingface` extra.",
    )
    pgvector_hnsw_m: int = setting(
        16,
        Integer(*HNSW_M_RANGE),
        "HNSW `m` for new indexes; existing indexes keep theirs until rebuilt.",
    )
    pgvector_hnsw_ef_construction: int = setting(
        64,
        Integer(
            *HNSW_EF_CONSTRUCTION_RANGE,
            floor="pgvector_hnsw_m",
            floor_factor=2,
            explain_floor=True,  # pgvector refuses ef_construction < 2 * m: say so
        ),
        "HNSW `ef_construction` for new indexes; existing indexes keep theirs.",
    )
    pgvector_hnsw_ef_search: int | None = setting(
        None,
        Integer(*HNSW_EF_SEARCH_RANGE),
        "Query-time `hnsw.ef_search`; safe to change at any time.",
        default_doc="unset (pgvector's)",
    )
    redis_uri: str | None = setting(
        None,
        RedisUri(),
        "URI of the optional Redis blob tier (copies of responses, never served past or out "
        'of step with their Postgres row: [cache.md](cache.md), "Redis tier"). Unset: '
        "Postgres only. Redis Cluster: `redis+cluster://[[user]:password@]host:port"
        "[,host:port...]/` (`rediss+cluster://`: TLS); Sentinel: "
        "`redis+sentinel://[[user]:password@]host:port[,host:port...]/<master name>"
        "[?db=N][&sentinel_password=...]` "
        "([deployment.md](deployment.md#redis-cluster-and-sentinel)).",
    )
    require_cache_scope: bool = setting(
        False,
        Flag(),
        "Require a non-empty, server-derived scope on every cached request (multi-tenant).",
    )
    cache_authorized_requests: bool = setting(
        False,
        Flag(),
        "Cache requests that carry credentials (`Authorization`, `Proxy-Authorization`, "
        "`Cookie`, `X-Api-Key`, `Api-Key`, `SEMANTIC_CACHE_CREDENTIAL_HEADERS`); a keyed "
        "digest of every credential present then joins the key. Off: they pass by uncached.",
    )
    credential_headers: tuple[str, ...] = setting(
        (),
        Names(lower=True),
        "More request headers that are credentials (`X-Tenant-Token,X-Session`), added to "
        "the built-in ones; compared in lower case.",
    )
    # Cookie names are case-sensitive (RFC 6265 5.4).
    credential_cookies: tuple[str, ...] = setting(
        (),
        Names(lower=False),
        "The cookies that are credentials (`session,sid`); other cookies (analytics) then "
        "neither bypass nor key the cache.",
        default_doc="none (any cookie is a credential)",
    )
    log_digest_key: bytes | None = setting(
        None,
        Key(DIGEST_KEY_MIN_BYTES),
        "HMAC key for prompt digests in logs; set it for digests stable across restarts.",
        default_doc="unset (a random key per process)",
    )
    response_mode: ResponseMode = setting(
        "buffered",
        Choice(get_args(ResponseMode)),
        "Miss delivery: `buffered`, or `tee` (forward chunks as they arrive).",
    )
    hit_response_mode: HitResponseMode | None = setting(
        None,
        Choice(get_args(HitResponseMode), unset_word="auto"),
        "Hit delivery: `single` or `stream`; unset (`auto`) follows the request.",
        default_doc="`auto`",
    )
    pg_ttl_days: float | None = setting(
        None,
        Real(0.0, MAX_TTL_DAYS, f"unset, or days > 0 and <= {MAX_TTL_DAYS:g}", low_open=True),
        "Age in (fractional) days after which an entry is never served and is purged.",
        default_doc="unset (no expiry)",
    )
    embed_timeout_seconds: float | None = setting(
        None,
        _TIMEOUT,
        "Budget for one embedder call: a hard bound on the caller's wait (the call is "
        "cancelled in the background).",
        default_doc="unset (no limit)",
    )
    store_timeout_seconds: float | None = setting(
        None,
        _TIMEOUT,
        "Budget for one Postgres / Redis operation; for Postgres, waiting for a pool "
        "connection included, a hard bound on the caller's wait ([cache.md](cache.md), "
        '"Budgets and fail-open").',
        default_doc="unset (no limit)",
    )
    upstream_timeout_seconds: float | None = setting(
        None,
        _TIMEOUT,
        "Budget for the app / upstream call: until the response starts reaching the client "
        "(504 if nothing was sent), then for each pause between chunks.",
        default_doc="unset (no limit)",
    )
    max_body_bytes: int = setting(
        10_485_760,
        Integer(1),
        "Request and response body cap (10 MiB); larger bodies pass through uncached.",
    )
    pg_pool_min_size: int = setting(1, Integer(0), "Connections the Postgres pool keeps open.")
    pg_pool_max_size: int = setting(
        10, Integer(1, floor="pg_pool_min_size"), "Most connections the Postgres pool opens."
    )
    pg_pooler: PgPooler = setting(
        "none",
        Choice(get_args(PgPooler)),
        "The connection pooler between the cache and Postgres: `none`, or PgBouncer's pool "
        "mode, `session` or `transaction` (no named prepared statements, settings per "
        "transaction; hot entries and the Redis tier refused) "
        "([deployment.md](deployment.md#pgbouncer)).",
    )
    pg_read_uri: tuple[str, ...] = setting(
        (),
        PgUris(),
        "Streaming replicas of `SEMANTIC_CACHE_PG_URI` (comma-separated): lookups read "
        "them, everything else goes to the primary; a replica that fails or answers late "
        "is skipped for the primary within the store timeout "
        "([deployment.md](deployment.md#read-replicas)).",
        default_doc="unset (lookups read the primary)",
    )
    redis_ttl_seconds: int | None = setting(
        None,
        RedisTtl(1),
        "TTL of Redis blobs; never longer than a row's remaining lifetime.",
        default_doc="unset (the Postgres TTL, else one day)",
    )
    breaker_failures: int = setting(
        5, Integer(1), "Consecutive failures of a dependency that open its circuit breaker."
    )
    breaker_cooldown_seconds: float = setting(
        30.0,
        Real(0.0, math.inf, "seconds > 0", low_open=True),
        "How long an open breaker skips the dependency before it tries again.",
    )
    hot_entries: int = setting(
        0,
        Integer(0),
        "Exact hits kept in process memory (0: off): a repeat costs no round trip. Postgres "
        "triggers + `LISTEN` drop deleted or replaced entries in every process "
        "([cache.md](cache.md)).",
    )
    metrics: bool = setting(
        False,
        Flag(),
        "Record Prometheus metrics (needs the `metrics` extra; with several worker "
        "processes set `PROMETHEUS_MULTIPROC_DIR`, see [observability.md](observability.md)).",
    )
    metrics_path: str | None = setting(
        None,
        UrlPath(),
        "Path at which the proxy serves the Prometheus metrics (`/metrics`); setting it "
        "turns `SEMANTIC_CACHE_METRICS` on.",
        default_doc="unset (not served)",
    )
    tracing: bool = setting(
        False,
        Flag(),
        "Record OpenTelemetry spans of each request (embed, search, store, upstream, "
        "replay) on the application's tracer provider, joining the caller's trace "
        "(needs the `otel` extra; see [observability.md](observability.md#traces)).",
    )
    admin_token: bytes | None = setting(
        None,
        Key(ADMIN_TOKEN_MIN_BYTES),
        "Bearer token of the admin endpoint (report a hit wrong, delete, purge, the "
        "dashboard); the proxy serves it only when this is set ([admin.md](admin.md)).",
        default_doc="unset (no admin endpoint)",
    )
    embedded_data_dir: Path | None = setting(
        None,
        Folder(),
        "Data folder of the embedded development Postgres.",
        default_doc="unset (`$XDG_CACHE_HOME/fastapi-semcache/postgres`, else "
        "`~/.cache/fastapi-semcache/postgres`)",
    )

    def __post_init__(self) -> None:
        check_fields(self)

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
    def records_metrics(self) -> bool:
        """Whether Prometheus metrics are recorded (``metrics``, or a ``metrics_path``)."""
        return self.metrics or self.metrics_path is not None

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
            elif spec(f).secret and value is not None:
                out[f.name] = "***"
            elif spec(f).url and value is not None:
                out[f.name] = spec(f).masked(value)
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
        # The dict holds exactly the fields' names with parsed values of the fields' types.
        return cls(**parse_environ(cls, env))  # type: ignore[arg-type]
