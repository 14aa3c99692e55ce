"""Session-wide test set-up: hypothesis profiles and the real servers the tests use."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import ClassVar

import pytest
import redis
from hypothesis import HealthCheck, settings

from semanticcache import HashingEmbedder
from semanticcache._devserver import EmbeddedPostgres
from tests.servers import PgBouncer, PgReplica, RedisServer, find_pgbouncer, start_postgres

# Machines here are noisy: no per-example deadline; CI runs more examples.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """The session's Postgres + pgvector (embedded, 127.0.0.1, free port)."""
    server = start_postgres(tmp_path_factory.mktemp("pg") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_uri(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """URI of a fresh database (with pgvector) for the current test module, dropped after."""
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    name = f"t_{module[:40]}_{secrets.token_hex(4)}"
    uri = pg_server.create_database(name)
    try:
        yield uri
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def pg_replica(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres
) -> Iterator[PgReplica]:
    """A streaming replica (hot standby) of the session's Postgres on its own free
    127.0.0.1 port; stopped by PID and its replication slot dropped at the end."""
    replica = PgReplica(
        tmp_path_factory.mktemp("pg-replica"), pg_server, f"semcache_test_{secrets.token_hex(4)}"
    )
    replica.create()
    try:
        yield replica
    finally:
        replica.close()


def _start_pgbouncer(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres, mode: str, size: int
) -> PgBouncer:
    if find_pgbouncer() is None:
        pytest.skip(
            "pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer; "
            "scripts/test.sh installs it)"
        )
    bouncer = PgBouncer(
        tmp_path_factory.mktemp(f"pgbouncer-{mode}"), pg_server.uri, pool_mode=mode, pool_size=size
    )
    bouncer.start()
    return bouncer


@pytest.fixture(scope="session")
def pgbouncer_transaction(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres
) -> Iterator[PgBouncer]:
    """Debian's pgbouncer in transaction mode in front of the session's Postgres, with
    two server connections per database: fewer than the clients the tests open."""
    bouncer = _start_pgbouncer(tmp_path_factory, pg_server, "transaction", 2)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def pgbouncer_session(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres
) -> Iterator[PgBouncer]:
    """Debian's pgbouncer in session mode in front of the session's Postgres (a client
    keeps its server connection: as many as the tests' clients)."""
    bouncer = _start_pgbouncer(tmp_path_factory, pg_server, "session", 12)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server on a free 127.0.0.1 port, stopped by PID."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's Redis, database 0 emptied (FLUSHDB) for this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


class ExactFirstHashingEmbedder(HashingEmbedder):
    """The hashing embedder declared costly: the cache probes exact matches before it
    embeds, as it does for a hosted model (same model id, same vectors)."""

    embeds_cheaply: ClassVar[bool] = False


@pytest.fixture(params=["embed_first", "exact_first"])
def hashing_cls(request: pytest.FixtureRequest) -> type[HashingEmbedder]:
    """Both lookup paths of ``SemanticCache``: ``HashingEmbedder`` (cheap: embed, then
    the exact probe and the search in one statement) and its exact-first twin."""
    return HashingEmbedder if request.param == "embed_first" else ExactFirstHashingEmbedder
