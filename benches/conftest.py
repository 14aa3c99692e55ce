"""Benchmarks use the test session's real servers (embedded Postgres + pgvector, Redis)."""

from tests.conftest import pg_replica, pg_server, pg_uri, redis_server

__all__ = ["pg_replica", "pg_server", "pg_uri", "redis_server"]
