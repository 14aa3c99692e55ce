"""Benchmarks use the test session's real servers (embedded Postgres + pgvector)."""

from tests.conftest import pg_server

__all__ = ["pg_server"]
