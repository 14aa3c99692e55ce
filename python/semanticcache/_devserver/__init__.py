"""The development server: a local Postgres with pgvector, for when no server is configured.

POSIX-only, development only (the ``embedded`` extra): :class:`EmbeddedPostgres` starts
or reuses the server of a data folder. Production sets ``SEMANTIC_CACHE_PG_URI``.
"""

from semanticcache._devserver.postgres import (
    PG_SYSTEM_USER,
    SUPERUSER,
    EmbeddedPostgres,
    default_embedded_data_dir,
    find_pg_bin_dir,
)

__all__ = [
    "PG_SYSTEM_USER",
    "SUPERUSER",
    "EmbeddedPostgres",
    "default_embedded_data_dir",
    "find_pg_bin_dir",
]
