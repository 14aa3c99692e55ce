"""The benchmarks use the test suite's real servers (an embedded Postgres with pgvector)."""

from tests.conftest import pg_server, pg_uri

__all__ = ["pg_server", "pg_uri"]
