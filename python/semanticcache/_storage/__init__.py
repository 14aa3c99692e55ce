"""Storage back ends: the pgvector store and the optional Redis tier.

Submodules are imported on demand: the Redis tier needs the ``redis`` extra.
"""
