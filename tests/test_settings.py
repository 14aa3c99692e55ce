"""CacheSettings: defaults, parsing, validation messages, secret masking, caching."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from semanticcache._settings import CacheSettings, EmbedderType, mask_connection_string
from semanticcache._settings_process import get_cache_settings, reset_cache_settings
from semanticcache.errors import ConfigurationError

P = "SEMANTIC_CACHE_"

EXPECTED_DEFAULTS: dict[str, object] = {
    "pg_uri": None,
    "embedder_type": "local",
    "openai_model": "text-embedding-3-small",
    "openai_dimensions": None,
    "openai_base_url": None,
    "openai_api_key": None,
    "voyage_model": "voyage-3.5",
    "voyage_dimensions": None,
    "voyage_base_url": None,
    "voyage_api_key": None,
    "cohere_model": "embed-v4.0",
    "cohere_dimensions": None,
    "cohere_base_url": None,
    "cohere_api_key": None,
    "huggingface_model": None,
    "huggingface_dimensions": None,
    "ollama_model": "nomic-embed-text",
    "ollama_dimensions": None,
    "ollama_base_url": "http://127.0.0.1:11434/v1",
    "threshold": 0.95,
    "top_k_candidates": 1,
    "rejection_threshold": None,
    "agreement_check": True,
    "verifier": "auto",
    "max_false_hit_rate": 0.01,
    "verifier_threshold": None,
    "verifier_floor": None,
    "verifier_model": None,
    "pgvector_hnsw_m": 16,
    "pgvector_hnsw_ef_construction": 64,
    "pgvector_hnsw_ef_search": None,
    "redis_uri": None,
    "require_cache_scope": False,
    "cache_authorized_requests": False,
    "credential_headers": (),
    "credential_cookies": (),
    "log_digest_key": None,
    "response_mode": "buffered",
    "hit_response_mode": None,
    "pg_ttl_days": None,
    "embed_timeout_seconds": None,
    "store_timeout_seconds": None,
    "upstream_timeout_seconds": None,
    "max_body_bytes": 10_485_760,
    "pg_pool_min_size": 1,
    "pg_pool_max_size": 10,
    "pg_pooler": "none",
    "pg_read_uri": (),
    "redis_ttl_seconds": None,
    "breaker_failures": 5,
    "breaker_cooldown_seconds": 30.0,
    "hot_entries": 0,
    "metrics": False,
    "metrics_path": None,
    "tracing": False,
    "admin_token": None,
    "embedded_data_dir": None,
}


# --- defaults ---------------------------------------------------------------------------


def test_every_field_has_a_tested_default() -> None:
    names = {f.name for f in dataclasses.fields(CacheSettings)}
    assert names == set(EXPECTED_DEFAULTS)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_DEFAULTS.items()))
def test_default(name: str, expected: object) -> None:
    assert getattr(CacheSettings(), name) == expected
    assert getattr(CacheSettings.from_env({}), name) == expected


def test_derived_defaults() -> None:
    s = CacheSettings()
    assert s.effective_redis_ttl_seconds == 86400
    assert s.log_digest_key_is_set is False
    assert s.uses_embedded_postgres is True
    key = s.effective_log_digest_key
    assert len(key) == 32
    # One random key per process: every unset settings object shares it.
    assert CacheSettings.from_env({}).effective_log_digest_key == key


def test_settings_are_frozen() -> None:
    s = CacheSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threshold = 0.5  # type: ignore[misc]
    assert not hasattr(s, "__dict__")  # slots


# --- from_env parsing --------------------------------------------------------------------


def test_from_env_reads_every_variable() -> None:
    env = {
        P + "PG_URI": "postgresql://app:pw@db.internal:5432/cache",
        P + "EMBEDDER_TYPE": "OpenAI",
        P + "THRESHOLD": "0.9",
        P + "TOP_K_CANDIDATES": "5",
        P + "REJECTION_THRESHOLD": "0.97",
        P + "AGREEMENT_CHECK": "off",
        P + "PGVECTOR_HNSW_M": "24",
        P + "PGVECTOR_HNSW_EF_CONSTRUCTION": "200",
        P + "PGVECTOR_HNSW_EF_SEARCH": "100",
        P + "REDIS_URI": "rediss://default:pw@cache.internal:6380/2",
        P + "REQUIRE_CACHE_SCOPE": "yes",
        P + "CACHE_AUTHORIZED_REQUESTS": "ON",
        P + "LOG_DIGEST_KEY": "0123456789abcdef-key",
        P + "RESPONSE_MODE": "tee",
        P + "HIT_RESPONSE_MODE": "stream",
        P + "PG_TTL_DAYS": "1.5",
        P + "EMBED_TIMEOUT_SECONDS": "2",
        P + "STORE_TIMEOUT_SECONDS": "0.25",
        P + "UPSTREAM_TIMEOUT_SECONDS": "60",
        P + "MAX_BODY_BYTES": "1024",
        P + "PG_POOL_MIN_SIZE": "0",
        P + "PG_POOL_MAX_SIZE": "4",
        P + "REDIS_TTL_SECONDS": "3600",
        P + "BREAKER_FAILURES": "3",
        P + "BREAKER_COOLDOWN_SECONDS": "7.5",
        P + "HOT_ENTRIES": "5000",
        P + "EMBEDDED_DATA_DIR": "/var/lib/semcache",
        "UNRELATED": "x",
    }
    s = CacheSettings.from_env(env)
    assert s == CacheSettings(
        pg_uri="postgresql://app:pw@db.internal:5432/cache",
        embedder_type="openai",
        threshold=0.9,
        top_k_candidates=5,
        rejection_threshold=0.97,
        agreement_check=False,
        pgvector_hnsw_m=24,
        pgvector_hnsw_ef_construction=200,
        pgvector_hnsw_ef_search=100,
        redis_uri="rediss://default:pw@cache.internal:6380/2",
        require_cache_scope=True,
        cache_authorized_requests=True,
        log_digest_key=b"0123456789abcdef-key",
        response_mode="tee",
        hit_response_mode="stream",
        pg_ttl_days=1.5,
        embed_timeout_seconds=2.0,
        store_timeout_seconds=0.25,
        upstream_timeout_seconds=60.0,
        max_body_bytes=1024,
        pg_pool_min_size=0,
        pg_pool_max_size=4,
        redis_ttl_seconds=3600,
        breaker_failures=3,
        breaker_cooldown_seconds=7.5,
        hot_entries=5000,
        embedded_data_dir=Path("/var/lib/semcache"),
    )
    assert s.log_digest_key_is_set is True
    assert s.effective_log_digest_key == b"0123456789abcdef-key"
    assert s.effective_redis_ttl_seconds == 3600
    assert s.uses_embedded_postgres is False


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(P + "THRESHOLD", "0.8")
    assert CacheSettings.from_env().threshold == 0.8


def test_empty_variables_count_as_unset() -> None:
    s = CacheSettings.from_env({P + "REDIS_URI": "", P + "THRESHOLD": "  ", P + "PG_URI": ""})
    assert s.redis_uri is None
    assert s.threshold == 0.95
    assert s.pg_uri is None


def test_values_are_stripped() -> None:
    s = CacheSettings.from_env({P + "TOP_K_CANDIDATES": " 3 ", P + "RESPONSE_MODE": " Tee\n"})
    assert s.top_k_candidates == 3
    assert s.response_mode == "tee"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(v, True) for v in ("1", "true", "TRUE", "True", "yes", "YES", "on", "On")],
        *[(v, False) for v in ("0", "false", "FALSE", "no", "No", "off", "OFF")],
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    s = CacheSettings.from_env(
        {
            P + "REQUIRE_CACHE_SCOPE": raw,
            P + "CACHE_AUTHORIZED_REQUESTS": raw,
            P + "AGREEMENT_CHECK": raw,
        }
    )
    assert s.agreement_check is expected
    assert s.require_cache_scope is expected
    assert s.cache_authorized_requests is expected


@pytest.mark.parametrize("embedder", ["openai", "voyage", "cohere", "huggingface", "ollama"])
def test_every_embedder_type_is_accepted(embedder: str) -> None:
    kind = cast(EmbedderType, embedder)
    assert CacheSettings(embedder_type=kind).embedder_type == embedder
    assert CacheSettings.from_env({P + "EMBEDDER_TYPE": embedder}).embedder_type == embedder


@pytest.mark.parametrize("raw", ["auto", "AUTO"])
def test_hit_response_mode_auto_means_none(raw: str) -> None:
    assert CacheSettings.from_env({P + "HIT_RESPONSE_MODE": raw}).hit_response_mode is None


def test_hit_response_mode_single() -> None:
    assert CacheSettings.from_env({P + "HIT_RESPONSE_MODE": "single"}).hit_response_mode == (
        "single"
    )


def test_embedded_data_dir_expands_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    s = CacheSettings.from_env({P + "EMBEDDED_DATA_DIR": "~/pg"})
    assert s.embedded_data_dir == Path("/home/tester/pg")
    assert CacheSettings(embedded_data_dir="/x").embedded_data_dir == Path("/x")  # type: ignore[arg-type]


def test_numbers_are_normalised_to_float() -> None:
    s = CacheSettings(threshold=1, breaker_cooldown_seconds=2, embed_timeout_seconds=3)
    assert type(s.threshold) is float
    assert type(s.breaker_cooldown_seconds) is float
    assert type(s.embed_timeout_seconds) is float
    assert s == CacheSettings(
        threshold=1.0, breaker_cooldown_seconds=2.0, embed_timeout_seconds=3.0
    )


# --- derived values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_ttl_days", "redis_ttl_seconds", "expected"),
    [
        (None, None, 86400),
        (2.0, None, 172800),
        (0.5, None, 43200),
        (1e-9, None, 1),  # never 0, which Redis would refuse
        (None, 60, 60),
        (1.0, 86400, 86400),
    ],
)
def test_effective_redis_ttl(
    pg_ttl_days: float | None, redis_ttl_seconds: int | None, expected: int
) -> None:
    s = CacheSettings(pg_ttl_days=pg_ttl_days, redis_ttl_seconds=redis_ttl_seconds)
    assert s.effective_redis_ttl_seconds == expected


def test_accepted_edges() -> None:
    # Boundaries that must stay valid.
    CacheSettings(threshold=0.0)
    CacheSettings(threshold=1.0, rejection_threshold=1.0)
    CacheSettings(threshold=0.5, rejection_threshold=0.5)
    CacheSettings(top_k_candidates=1000)
    CacheSettings(pgvector_hnsw_m=2, pgvector_hnsw_ef_construction=4)
    CacheSettings(pgvector_hnsw_m=100, pgvector_hnsw_ef_construction=200)
    CacheSettings(pgvector_hnsw_ef_search=1)
    CacheSettings(pgvector_hnsw_ef_search=1000)
    CacheSettings(max_body_bytes=1)
    CacheSettings(pg_pool_min_size=5, pg_pool_max_size=5)
    CacheSettings(pg_ttl_days=36500)
    CacheSettings(log_digest_key=b"k" * 16)


# --- validation errors -------------------------------------------------------------------

# (kwargs, variable named in the message, fragments the message must contain)
INVALID_KWARGS: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [
    ({"threshold": -0.01}, "THRESHOLD", ("-0.01", "0.0 to 1.0")),
    ({"threshold": 1.01}, "THRESHOLD", ("1.01", "0.0 to 1.0")),
    ({"threshold": float("nan")}, "THRESHOLD", ("nan", "0.0 to 1.0")),
    ({"threshold": "0.9"}, "THRESHOLD", ("str", "0.0 to 1.0")),
    ({"threshold": True}, "THRESHOLD", ("bool",)),
    ({"rejection_threshold": 0.9}, "REJECTION_THRESHOLD", ("0.9", "0.95", "1.0")),
    ({"rejection_threshold": 1.5}, "REJECTION_THRESHOLD", ("1.5", "1.0")),
    ({"top_k_candidates": 0}, "TOP_K_CANDIDATES", ("0", "1 to 1000")),
    ({"top_k_candidates": 1001}, "TOP_K_CANDIDATES", ("1001", "1 to 1000")),
    ({"top_k_candidates": 2.0}, "TOP_K_CANDIDATES", ("float", "integer")),
    ({"pgvector_hnsw_m": 1}, "PGVECTOR_HNSW_M", ("1", "2 to 100")),
    ({"pgvector_hnsw_m": 101}, "PGVECTOR_HNSW_M", ("101", "2 to 100")),
    (
        {"pgvector_hnsw_ef_construction": 31},
        "PGVECTOR_HNSW_EF_CONSTRUCTION",
        ("31", "2 * SEMANTIC_CACHE_PGVECTOR_HNSW_M", "32 to 1000"),
    ),
    (
        {"pgvector_hnsw_m": 2, "pgvector_hnsw_ef_construction": 3},
        "PGVECTOR_HNSW_EF_CONSTRUCTION",
        ("3", "4 to 1000"),
    ),
    (
        {"pgvector_hnsw_ef_construction": 1001},
        "PGVECTOR_HNSW_EF_CONSTRUCTION",
        ("1001", "32 to 1000"),
    ),
    ({"pgvector_hnsw_ef_search": 0}, "PGVECTOR_HNSW_EF_SEARCH", ("0", "1 to 1000")),
    ({"pgvector_hnsw_ef_search": 1001}, "PGVECTOR_HNSW_EF_SEARCH", ("1001", "1 to 1000")),
    ({"embedder_type": "bert"}, "EMBEDDER_TYPE", ("bert", "openai", "local", "hashing")),
    ({"response_mode": "stream"}, "RESPONSE_MODE", ("stream", "buffered, tee")),
    ({"hit_response_mode": "auto"}, "HIT_RESPONSE_MODE", ("auto", "single, stream")),
    ({"require_cache_scope": "true"}, "REQUIRE_CACHE_SCOPE", ("boolean",)),
    ({"agreement_check": 1}, "AGREEMENT_CHECK", ("boolean",)),
    ({"cache_authorized_requests": 1}, "CACHE_AUTHORIZED_REQUESTS", ("boolean",)),
    ({"pg_ttl_days": 0}, "PG_TTL_DAYS", ("0", "days > 0")),
    ({"pg_ttl_days": -1.0}, "PG_TTL_DAYS", ("-1.0", "days > 0")),
    ({"pg_ttl_days": 36501}, "PG_TTL_DAYS", ("36501", "36500")),
    ({"pg_ttl_days": float("inf")}, "PG_TTL_DAYS", ("inf", "days > 0")),
    ({"embed_timeout_seconds": 0}, "EMBED_TIMEOUT_SECONDS", ("0", "seconds > 0")),
    ({"store_timeout_seconds": -1}, "STORE_TIMEOUT_SECONDS", ("-1", "seconds > 0")),
    (
        {"upstream_timeout_seconds": float("inf")},
        "UPSTREAM_TIMEOUT_SECONDS",
        ("inf", "seconds > 0"),
    ),
    ({"max_body_bytes": 0}, "MAX_BODY_BYTES", ("0", ">= 1")),
    ({"pg_pool_min_size": -1}, "PG_POOL_MIN_SIZE", ("-1", ">= 0")),
    ({"pg_pool_max_size": 0}, "PG_POOL_MAX_SIZE", ("0", ">= 1")),
    ({"pg_pool_min_size": 5, "pg_pool_max_size": 4}, "PG_POOL_MAX_SIZE", ("4", ">= 5")),
    ({"redis_ttl_seconds": 0}, "REDIS_TTL_SECONDS", ("0", ">= 1")),
    (
        {"pg_ttl_days": 1.0, "redis_ttl_seconds": 86401},
        "REDIS_TTL_SECONDS",
        ("86401", "PG_TTL_DAYS", "1 to 86400"),
    ),
    ({"breaker_failures": 0}, "BREAKER_FAILURES", ("0", ">= 1")),
    ({"breaker_cooldown_seconds": 0}, "BREAKER_COOLDOWN_SECONDS", ("0", "seconds > 0")),
    ({"embedded_data_dir": 3}, "EMBEDDED_DATA_DIR", ("path",)),
    ({"metrics_path": "metrics"}, "METRICS_PATH", ("'metrics'", "starting with `/`")),
    ({"metrics_path": "/metrics?x=1"}, "METRICS_PATH", ("'/metrics?x=1'", "no query string")),
    ({"metrics_path": "/a b"}, "METRICS_PATH", ("'/a b'",)),
    ({"metrics_path": 5}, "METRICS_PATH", ("string",)),
    ({"log_digest_key": b"short"}, "LOG_DIGEST_KEY", ("5 bytes", "at least 16 bytes")),
    ({"log_digest_key": "x" * 32}, "LOG_DIGEST_KEY", ("bytes", "at least 16 bytes")),
    ({"pg_uri": ""}, "PG_URI", ("postgresql://",)),
    ({"pg_uri": "mysql://u@h/db"}, "PG_URI", ("mysql://***@h/db", "postgresql://")),
    ({"pg_uri": "localhost"}, "PG_URI", ("localhost", "key=value")),
    ({"pg_uri": "host=x nonsense=1"}, "PG_URI", ('invalid connection option "nonsense"',)),
    ({"pg_uri": "postgresql://u@h:99999/db"}, "PG_URI", ("99999",)),
    ({"pg_uri": "postgresql://u@h:abc/db"}, "PG_URI", ("abc",)),
    ({"pg_uri": "postgresql://[::1"}, "PG_URI", ("cannot be parsed",)),
    ({"pg_uri": 5}, "PG_URI", ("string",)),
    ({"redis_uri": "http://localhost:6379"}, "REDIS_URI", ("http://", "redis://, rediss://")),
    ({"redis_uri": "localhost:6379"}, "REDIS_URI", ("localhost:6379", "unix://")),
    ({"redis_uri": "redis://"}, "REDIS_URI", ("no host",)),
    ({"redis_uri": "redis://localhost:notaport"}, "REDIS_URI", ("cannot be parsed",)),
    ({"redis_uri": "redis://localhost:0"}, "REDIS_URI", ("port",)),
    ({"redis_uri": "redis://localhost:6379/db"}, "REDIS_URI", ("database",)),
    ({"redis_uri": "unix://"}, "REDIS_URI", ("socket path",)),
    ({"redis_uri": "redis+cluster://h:1/0"}, "REDIS_URI", ("path",)),
    ({"redis_uri": "redis+cluster://h:1?db=1"}, "REDIS_URI", ("query",)),
    ({"redis_uri": "redis+cluster://h:1,h:x"}, "REDIS_URI", ("host list",)),
    ({"redis_uri": "redis+cluster://h:1,"}, "REDIS_URI", ("host list",)),
    ({"redis_uri": "redis+cluster://h:70000"}, "REDIS_URI", ("port",)),
    ({"redis_uri": "redis+sentinel://h:1"}, "REDIS_URI", ("master name",)),
    ({"redis_uri": "redis+sentinel://h:1/m?db=x"}, "REDIS_URI", ("database",)),
    ({"redis_uri": "redis+sentinel://h:1/m?ssl=1"}, "REDIS_URI", ("'ssl'",)),
    ({"redis_uri": "redis+sentinel://h:1/m?db=1&db=2"}, "REDIS_URI", ("repeats",)),
]


@pytest.mark.parametrize(
    ("kwargs", "variable", "fragments"),
    INVALID_KWARGS,
    ids=[f"{v}-{i}" for i, (_, v, _) in enumerate(INVALID_KWARGS)],
)
def test_constructor_rejects(
    kwargs: dict[str, Any], variable: str, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings(**kwargs)
    message = str(info.value)
    assert message.startswith(P + variable + " ")
    assert "accepted:" in message
    for fragment in fragments:
        assert fragment in message


INVALID_ENV: list[tuple[str, str, tuple[str, ...]]] = [
    ("THRESHOLD", "high", ("'high'", "number")),
    ("THRESHOLD", "nan", ("'nan'", "finite")),
    ("THRESHOLD", "1.2", ("1.2", "0.0 to 1.0")),
    ("TOP_K_CANDIDATES", "2.5", ("'2.5'", "whole number")),
    ("TOP_K_CANDIDATES", "0", ("0", "1 to 1000")),
    ("PGVECTOR_HNSW_M", "sixteen", ("'sixteen'",)),
    ("PGVECTOR_HNSW_EF_SEARCH", "-5", ("-5", "1 to 1000")),
    ("REQUIRE_CACHE_SCOPE", "maybe", ("'maybe'", "true/false", "yes/no", "on/off")),
    ("CACHE_AUTHORIZED_REQUESTS", "2", ("'2'", "1/0")),
    ("AGREEMENT_CHECK", "sometimes", ("'sometimes'", "true/false")),
    ("EMBEDDER_TYPE", "word2vec", ("word2vec", "huggingface")),
    ("RESPONSE_MODE", "chunked", ("chunked", "buffered")),
    ("HIT_RESPONSE_MODE", "json", ("json", "single")),
    ("PG_TTL_DAYS", "1d", ("'1d'", "number")),
    ("EMBED_TIMEOUT_SECONDS", "0", ("0", "seconds > 0")),
    ("UPSTREAM_TIMEOUT_SECONDS", "inf", ("'inf'", "finite")),
    ("MAX_BODY_BYTES", "10MB", ("'10MB'",)),
    ("MAX_BODY_BYTES", "0", ("0", ">= 1")),
    ("BREAKER_FAILURES", "-1", ("-1", ">= 1")),
    ("HOT_ENTRIES", "-5", ("-5", ">= 0")),
    ("METRICS", "sometimes", ("'sometimes'", "true/false")),
    ("TRACING", "maybe", ("'maybe'", "true/false")),
    ("METRICS_PATH", "http://host/metrics", ("'http://host/metrics'", "starting with `/`")),
    ("REDIS_URI", "memcached://h", ("memcached://h", "redis://")),
    ("PG_URI", "sqlite:///x.db", ("sqlite:///x.db", "postgresql://")),
]


@pytest.mark.parametrize(
    ("variable", "raw", "fragments"),
    INVALID_ENV,
    ids=[f"{v}={r}" for v, r, _ in INVALID_ENV],
)
def test_from_env_rejects(variable: str, raw: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings.from_env({P + variable: raw})
    message = str(info.value)
    assert message.startswith(P + variable + " ")
    assert "accepted:" in message
    for fragment in fragments:
        assert fragment in message


def test_credential_names_from_env_and_constructor() -> None:
    s = CacheSettings.from_env(
        {
            P + "CREDENTIAL_HEADERS": " X-Tenant-Token, x-session ,,X-TENANT-TOKEN",
            P + "CREDENTIAL_COOKIES": "session, SID",
        }
    )
    # Header names lower-case and without duplicates; cookie names keep their case.
    assert s.credential_headers == ("x-tenant-token", "x-session")
    assert s.credential_cookies == ("session", "SID")
    assert CacheSettings(credential_headers=("X-A",)).credential_headers == ("x-a",)
    assert CacheSettings(credential_cookies=("sid",)) == CacheSettings.from_env(
        {P + "CREDENTIAL_COOKIES": "sid"}
    )


@pytest.mark.parametrize(
    ("kwargs", "variable", "fragment"),
    [
        ({"credential_headers": "x-a"}, "CREDENTIAL_HEADERS", "tuple of names"),
        ({"credential_headers": ("x a",)}, "CREDENTIAL_HEADERS", "'x a'"),
        ({"credential_headers": (3,)}, "CREDENTIAL_HEADERS", "3"),
        ({"credential_cookies": ("a;b",)}, "CREDENTIAL_COOKIES", "'a;b'"),
        ({"credential_cookies": ("",)}, "CREDENTIAL_COOKIES", "''"),
    ],
)
def test_credential_names_are_validated(
    kwargs: dict[str, Any], variable: str, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings(**kwargs)
    message = str(info.value)
    assert message.startswith(P + variable + " ")
    assert fragment in message
    assert "accepted:" in message
    with pytest.raises(ConfigurationError, match=P + "CREDENTIAL_COOKIES"):
        CacheSettings.from_env({P + "CREDENTIAL_COOKIES": "sid, a=b"})


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="SEMANTIC_CACHE_THRESHOLD"):
        CacheSettings(threshold=2.0)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://app:pw@localhost/db",
        "postgres://localhost:5432/db?sslmode=require",
        "postgresql://u:pw@h1:5432,h2:5433/db",
        "postgresql:///db?host=/var/run/postgresql",
        "host=localhost port=5432 dbname=db user=app password='p w'",
        "dbname=cache",
    ],
)
def test_valid_pg_uris(uri: str) -> None:
    assert CacheSettings(pg_uri=uri).pg_uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "redis://localhost",
        "redis://localhost:6379/0",
        "redis://:pw@localhost:6379/15",
        "rediss://user:pw@cache.example.com:6380",
        "redis://[::1]:6379/",
        "unix:///run/redis.sock",
        "unix://user:pw@/run/redis.sock?db=2",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000/",
        "rediss+cluster://user:pw@node-a,[::1]:7001",
        "redis+sentinel://s1:26379,s2:26379,s3/mymaster",
        "redis+sentinel://:pw@s1/mymaster?db=3&sentinel_password=spw",
    ],
)
def test_valid_redis_uris(uri: str) -> None:
    assert CacheSettings(redis_uri=uri).redis_uri == uri


# --- secrets -----------------------------------------------------------------------------

SECRET = "hunter2-s3cr3t"
DIGEST_SECRET = "digest-key-that-must-not-leak"


def _secret_settings() -> CacheSettings:
    return CacheSettings.from_env(
        {
            P + "PG_URI": f"postgresql://app:{SECRET}@db.internal:5432/cache",
            P + "REDIS_URI": f"redis://default:{SECRET}@cache.internal:6379/0",
            P + "LOG_DIGEST_KEY": DIGEST_SECRET,
        }
    )


def test_repr_and_str_mask_passwords_and_hide_the_digest_key() -> None:
    s = _secret_settings()
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert SECRET not in text
        assert DIGEST_SECRET not in text
        assert "postgresql://app:***@db.internal:5432/cache" in text
        assert "redis://default:***@cache.internal:6379/0" in text
        assert "log_digest_key_is_set=True" in text
    # The real values stay available to the code that connects.
    assert s.pg_uri is not None
    assert SECRET in s.pg_uri
    assert s.effective_log_digest_key == DIGEST_SECRET.encode()


@pytest.mark.parametrize(
    "uri",
    [
        f"redis+cluster://user:{SECRET}@n1:7000,n2:7000/",
        f"redis+sentinel://:{SECRET}@s1,s2:26380/mymaster?db=1",
        f"redis+sentinel://s1/mymaster?sentinel_password={SECRET}",
    ],
)
def test_cluster_and_sentinel_uris_are_masked(uri: str) -> None:
    s = CacheSettings(redis_uri=uri)
    for text in (repr(s), str(s), str(s.redacted())):
        assert SECRET not in text
        assert "***" in text


def test_redacted_is_safe_and_complete() -> None:
    s = _secret_settings()
    out = s.redacted()
    assert SECRET not in str(out)
    assert DIGEST_SECRET not in str(out)
    assert "log_digest_key" not in out
    assert out["log_digest_key_is_set"] is True
    expected = {f.name for f in dataclasses.fields(CacheSettings)} - {"log_digest_key"}
    assert set(out) == expected | {"log_digest_key_is_set"}


@pytest.mark.parametrize(
    ("kwargs", "secret"),
    [
        ({"pg_uri": f"mysql://u:{SECRET}@h/db"}, SECRET),
        ({"pg_uri": f"host=x password={SECRET} bogus"}, SECRET),
        ({"pg_uri": f"host=x password='{SECRET} x' nonsense=1"}, SECRET),
        ({"pg_uri": f"postgresql://u:{SECRET}@h:99999/db"}, SECRET),
        ({"pg_uri": f"postgresql://u:{SECRET}@[::1"}, SECRET),
        ({"pg_uri": f"postgresql://u@h:0/db?password={SECRET}"}, SECRET),
        ({"redis_uri": f"http://:{SECRET}@h"}, SECRET),
        ({"redis_uri": f"redis://:{SECRET}@h:bad"}, SECRET),
        ({"redis_uri": f"redis://:{SECRET}@h/notadb"}, SECRET),
        ({"redis_uri": f"redis+cluster://u:{SECRET}@h:1/0"}, SECRET),
        ({"redis_uri": f"redis+cluster://u:pa/{SECRET}@h:1"}, SECRET),
        ({"redis_uri": f"redis+sentinel://:{SECRET}@h:1,h:x/m"}, SECRET),
        ({"redis_uri": f"redis+sentinel://h/m?sentinel_password={SECRET}&db=x"}, SECRET),
        ({"log_digest_key": b"tiny-secret"}, "tiny-secret"),
    ],
)
def test_errors_do_not_leak_secrets(kwargs: dict[str, Any], secret: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings(**kwargs)
    assert secret not in str(info.value)
    # Chained exceptions would print the secret in a traceback.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True or info.value.__context__ is None


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u:pw@h1,h2/db?sslmode=require",
            "postgresql://u:***@h1,h2/db?sslmode=require",
        ),
        (
            "postgresql://h/db?password=pw&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("postgresql://h/db?sslpassword=pw", "postgresql://h/db?sslpassword=***"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        (
            "unix://u:pw@/run/redis.sock?db=0&password=pw",
            "unix://u:***@/run/redis.sock?db=0&password=***",
        ),
        ("host=h password=pw user=u", "host=h password=*** user=u"),
        ("host=h password = 'p w \\' x' user=u", "host=h password = *** user=u"),
        ("host=h sslpassword=pw", "host=h sslpassword=***"),
        ("dbname=db", "dbname=db"),
        # Malformed input must still not leak: unescaped "/", "?" or "://" in a password.
        ("postgresql://u:pa/ss?x@h/db", "postgresql://u:***@h/db"),
        ("host=h password=a://b@c user=u", "host=h password=*** user=u"),
        ("postgresql://u:pw@h/db?application_name=a@b", "postgresql://u:***@b"),
        # Whatever lies between "://" and "@" when the URI does not parse, a token in the
        # user name's place, "user:password@" without a scheme, secrets in free text.
        ("postgresql//u:pw@h/db", "postgresql//u:***@h/db"),
        ("redis//:pw@h", "redis//:***@h"),
        ("redis://pw@h:6379/0", "redis://***@h:6379/0"),
        ("https://token@example.org/v1", "https://***@example.org/v1"),
        ("u:pw@h:5432/db", "u:***@h:5432/db"),
        ("https://h/v1?api_key=k&x=1", "https://h/v1?api_key=***&x=1"),
        ("https://h/v1?access_token=t", "https://h/v1?access_token=***"),
        (
            "unrecognized arguments: postgresql://u:pw@h/db 'redis://:pw@h' token=t",
            "unrecognized arguments: postgresql://u:***@h/db 'redis://:***@h' token=***",
        ),
        ("connecting to 127.0.0.1:6379 failed", "connecting to 127.0.0.1:6379 failed"),
        ("max_tokens=5", "max_tokens=5"),
    ],
)
def test_mask_connection_string(raw: str, masked: str) -> None:
    assert mask_connection_string(raw) == masked


# --- the shared instance -----------------------------------------------------------------


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    reset_cache_settings()
    yield
    reset_cache_settings()


@pytest.mark.usefixtures("fresh_settings")
def test_get_cache_settings_reads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(P + "TOP_K_CANDIDATES", "7")
    first = get_cache_settings()
    assert first.top_k_candidates == 7
    monkeypatch.setenv(P + "TOP_K_CANDIDATES", "9")
    assert get_cache_settings() is first
    reset_cache_settings()
    second = get_cache_settings()
    assert second is not first
    assert second.top_k_candidates == 9


@pytest.mark.usefixtures("fresh_settings")
def test_get_cache_settings_does_not_cache_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(P + "THRESHOLD", "7")
    with pytest.raises(ConfigurationError, match="SEMANTIC_CACHE_THRESHOLD"):
        get_cache_settings()
    monkeypatch.setenv(P + "THRESHOLD", "0.7")
    assert get_cache_settings().threshold == 0.7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"hit_response_mode": "auto"},
            "SEMANTIC_CACHE_HIT_RESPONSE_MODE is not a known value: 'auto'; "
            "accepted: one of single, stream",
        ),
        (
            {"pgvector_hnsw_ef_construction": 31},
            "SEMANTIC_CACHE_PGVECTOR_HNSW_EF_CONSTRUCTION is 31, below 2 * "
            "SEMANTIC_CACHE_PGVECTOR_HNSW_M (32); accepted: an integer from 32 to 1000",
        ),
        (
            {"pg_pool_min_size": 5, "pg_pool_max_size": 4},
            "SEMANTIC_CACHE_PG_POOL_MAX_SIZE is out of range: 4; accepted: an integer >= 5",
        ),
        (
            {"rejection_threshold": 0.9},
            "SEMANTIC_CACHE_REJECTION_THRESHOLD is out of range: 0.9; "
            "accepted: unset, or from SEMANTIC_CACHE_THRESHOLD (0.95) to 1.0",
        ),
        (
            {"pg_ttl_days": 1.0, "redis_ttl_seconds": 86401},
            "SEMANTIC_CACHE_REDIS_TTL_SECONDS is 86401, longer than SEMANTIC_CACHE_PG_TTL_DAYS "
            "(86400 s); accepted: an integer from 1 to 86400",
        ),
        (
            {"openai_api_key": " "},
            "SEMANTIC_CACHE_OPENAI_API_KEY is blank; accepted: unset, or a non-empty string",
        ),
    ],
)
def test_exact_messages(kwargs: dict[str, Any], message: str) -> None:
    # Messages that depend on another setting, or that must not show the value.
    with pytest.raises(ConfigurationError) as info:
        CacheSettings(**kwargs)
    assert str(info.value) == message


def test_metrics_are_recorded_when_on_or_served() -> None:
    assert not CacheSettings().records_metrics
    assert CacheSettings.from_env({P + "METRICS": "on"}).records_metrics
    served = CacheSettings.from_env({P + "METRICS_PATH": "/internal/metrics"})
    assert served.metrics_path == "/internal/metrics"
    assert served.records_metrics


# --- read replicas ----------------------------------------------------------------------


def test_read_uris_split_at_each_uri_and_keep_multi_host_uris_whole() -> None:
    s = CacheSettings.from_env(
        {
            P + "PG_READ_URI": " postgresql://r@h1,h2:5433/db?target_session_attrs=any , "
            "postgres://r@h3/db,postgresql://r@h1,h2:5433/db?target_session_attrs=any"
        }
    )
    assert s.pg_read_uri == (
        "postgresql://r@h1,h2:5433/db?target_session_attrs=any",
        "postgres://r@h3/db",
    )
    assert CacheSettings(pg_read_uri=("host=r1 dbname=db",)).pg_read_uri == ("host=r1 dbname=db",)
    assert CacheSettings().pg_read_uri == ()


def test_read_uris_are_masked_in_repr_and_redacted() -> None:
    s = CacheSettings.from_env(
        {P + "PG_READ_URI": f"postgresql://r:{SECRET}@r1/db,postgresql://r:{SECRET}@r2/db"}
    )
    assert SECRET in s.pg_read_uri[1]
    assert s.redacted()["pg_read_uri"] == ("postgresql://r:***@r1/db", "postgresql://r:***@r2/db")
    assert SECRET not in repr(s)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"postgresql://r:{SECRET}@r1/db,mysql://u:{SECRET}@h/db", "is not a Postgres"),
        (f"postgresql://r:{SECRET}@r1:99999/db", "99999"),
        (f"postgresql://r:{SECRET}@r1/db,postgresql://r@r2:abc/db", "abc"),
    ],
)
def test_bad_read_uris_name_the_variable_and_hide_passwords(value: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings.from_env({P + "PG_READ_URI": value})
    message = str(info.value)
    assert message.startswith(P + "PG_READ_URI ")
    assert shown in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ((f"postgresql://r:{SECRET}@r1/db", " "), "empty connection string"),
        (f"postgresql://r:{SECRET}@r1/db", "tuple"),
        (5, "tuple"),
    ],
)
def test_read_uris_as_arguments_are_a_tuple(value: object, shown: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheSettings(pg_read_uri=value)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(P + "PG_READ_URI ")
    assert shown in message
    assert SECRET not in message
