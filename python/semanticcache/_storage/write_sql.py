"""The write SQL: every statement that changes a cache table's rows or its counts.

The upsert of an entry, the hit and nearest-similarity counts, and the deletes: by id, by
purge selector, and the expired batch. :class:`~semanticcache._storage.pgvector.PgVectorStore`
runs them; the reads of the lookup path are :mod:`~semanticcache._storage.lookup_sql`'s.
"""

from __future__ import annotations

import math
from typing import Final

from psycopg import sql

from semanticcache.errors import ConfigurationError

__all__ = [
    "ADD_NEAREST",
    "add_hits",
    "delete_by_id",
    "purge",
    "purge_expired_batch",
    "returning_keys",
    "upsert",
]


def upsert(t: sql.Identifier) -> sql.Composed:
    """Insert or replace the entry for (partition, text_digest) (parameters: partition,
    text digest, scope, route, model or None, lookup text, vector, response, TTL seconds
    or None); returns its
    id, ``created_at`` and ``expires_at`` (None: never).

    A replaced entry gets a ``created_at`` later than the one it replaces, so that (id,
    created_at) orders the versions of a row as the row lock ordered the writes.
    """
    return sql.SQL(
        """
        INSERT INTO {t}
            (partition, text_digest, scope, route, model, lookup_text, embedding, response,
             expires_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s::vector, %s,
                coalesce(now() + make_interval(secs => %s), 'infinity'))
        ON CONFLICT (partition, text_digest) DO UPDATE SET
            scope = EXCLUDED.scope,
            route = EXCLUDED.route,
            model = EXCLUDED.model,
            lookup_text = EXCLUDED.lookup_text,
            embedding = EXCLUDED.embedding,
            response = EXCLUDED.response,
            created_at = greatest(clock_timestamp(), {t}.created_at + interval '1 microsecond'),
            expires_at = EXCLUDED.expires_at,
            hit_count = 0
        RETURNING id, created_at, NULLIF(expires_at, 'infinity')
        """
    ).format(t=t)


def add_hits(t: sql.Identifier) -> sql.Composed:
    """Add hits to entries (parameters: the ids, the counts, as two arrays)."""
    return sql.SQL(
        "UPDATE {t} SET hit_count = hit_count + v.n "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE {t}.id = v.id"
    ).format(t=t)


ADD_NEAREST: Final = (
    "INSERT INTO semcache_similarity_counts AS c (cache_table, outcome, bucket, lookups) "
    "SELECT %s, v.o, v.b, v.n "
    "FROM unnest(%s::text[], %s::smallint[], %s::bigint[]) AS v(o, b, n) "
    "ON CONFLICT (cache_table, outcome, bucket) "
    "DO UPDATE SET lookups = c.lookups + EXCLUDED.lookups"
)
"""Add lookups to a table's nearest-similarity counts (parameters: the table name, then
the outcomes, buckets and counts as three arrays)."""


def delete_by_id(t: sql.Identifier) -> sql.Composed:
    """Delete one entry (parameter: its id)."""
    return sql.SQL("DELETE FROM {t} WHERE id = %s").format(t=t)


def purge(
    t: sql.Identifier,
    *,
    scope: str | None,
    partition: bytes | None,
    expired: bool,
    older_than: float | None,
    all: bool,  # shadows the builtin: purge(all=True) is the documented spelling
    route: str | None = None,
    model: str | None = None,
) -> tuple[sql.Composed, tuple[object, ...]]:
    """The delete that the purge selectors choose, and its parameters; raises
    :class:`~semanticcache.errors.ConfigurationError` for no selector, a bad
    ``older_than``, or ``all`` with another selector."""
    if older_than is not None and not (math.isfinite(older_than) and older_than >= 0):
        raise ConfigurationError(f"older_than must be >= 0 seconds, not {older_than!r}")
    if all:
        others = (scope, partition, route, model, older_than)
        if expired or any(v is not None for v in others):
            raise ConfigurationError("purge(all=True) takes no other selector")
        return sql.SQL("DELETE FROM {t}").format(t=t), ()
    conditions: list[sql.Composable] = []
    params: list[object] = []
    if scope is not None:
        conditions.append(sql.SQL("scope = %s"))
        params.append(scope)
    if partition is not None:
        conditions.append(sql.SQL("partition = %s"))
        params.append(partition)
    if route is not None:
        conditions.append(sql.SQL("route = %s"))
        params.append(route)
    if model is not None:
        conditions.append(sql.SQL("model = %s"))
        params.append(model)
    if expired:
        conditions.append(sql.SQL("expires_at <= now() AND expires_at < 'infinity'"))
    if older_than is not None:
        # created_at is reset when an entry is replaced: age counts from the last put.
        conditions.append(sql.SQL("created_at < now() - make_interval(secs => %s)"))
        params.append(older_than)
    if not conditions:
        raise ConfigurationError(
            "purge needs a selector: scope=, route=, model=, partition=, expired=True, "
            "older_than= or all=True"
        )
    query = sql.SQL("DELETE FROM {t} WHERE {c}").format(t=t, c=sql.SQL(" AND ").join(conditions))
    return query, tuple(params)


def purge_expired_batch(t: sql.Identifier) -> sql.Composed:
    """Delete expired rows (parameter: how many at most).

    ``SKIP LOCKED``: several processes purging at once take different rows instead of
    queueing on the same ones.
    """
    return sql.SQL(
        # "< 'infinity'": implied by the first condition, but the planner needs it
        # spelled out to use the partial expiry index.
        "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= now() "
        "AND expires_at < 'infinity' ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    ).format(t=t)


def returning_keys(delete: sql.Composed) -> sql.Composed:
    """``delete``, returning each deleted row's (partition, text digest, id)."""
    return delete + sql.SQL(" RETURNING partition, text_digest, id")
