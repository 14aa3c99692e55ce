"""Storage back ends: the pgvector store and the embedded development Postgres.

Submodules are imported on demand: the embedded launcher needs the ``embedded`` extra.
"""
