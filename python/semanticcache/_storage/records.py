"""What the store returns: found rows, search results and table statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Self

__all__ = [
    "SIMILARITY_BUCKETS",
    "ScopeStats",
    "SearchResult",
    "StoreStats",
    "StoredEntry",
    "similarity_bucket",
]

SIMILARITY_BUCKETS: Final = 100
"""Buckets of the nearest-similarity counts: bucket ``i`` counts similarities in
``[i / 100, (i + 1) / 100)``; 1.0 falls in the last, negative ones in the first."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A row found by :meth:`PgVectorStore.get_exact` or :meth:`PgVectorStore.search`."""

    id: int
    response: bytes
    created_at: datetime
    similarity: float
    """Cosine similarity to the query, 1 - (embedding <=> query); 1.0 for exact lookups."""
    text_digest: bytes = b""
    """The row's lookup-text digest (set by :meth:`PgVectorStore.search` and
    :meth:`PgVectorStore.lookup`)."""
    lookup_text: str | None = None
    """The row's stored lookup text, for every candidate of a search (the agreement
    check reads it); ``None`` for :meth:`PgVectorStore.get_exact`."""
    expires_at: datetime | None = None
    """When the row expires; ``None``: never, or not fetched (only
    :meth:`PgVectorStore.get_exact` and the exact row of :meth:`PgVectorStore.lookup`
    fetch it)."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What :meth:`PgVectorStore.search` and :meth:`PgVectorStore.lookup` found."""

    matches: list[StoredEntry]
    """The candidates at or above the threshold, best first (or the exact row)."""
    nearest: float | None
    """Similarity of the nearest row of the partition, whether or not it passed the
    threshold (1.0 for the exact row); ``None`` when the partition holds no live row.
    What a miss was missed by: the figure to tune a threshold on."""
    nearest_id: int | None = None
    """Id of that nearest row (``None`` with ``nearest``)."""

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]], threshold: float) -> Self:
        """From the lookup SQL's rows (the columns of ``lookup_sql.LOOKUP_COLUMNS``)."""
        found = [
            StoredEntry(r[0], r[1] if r[1] is not None else b"", r[2], r[3], r[4], r[5], r[6])
            for r in rows
        ]
        if not found:
            return cls([], None)
        if len(found) > 1:
            # The server sorted them, but relaxed_order and float ties deserve a stable
            # order.
            found.sort(key=lambda e: (-e.similarity, e.id))
        # The same float8 comparison as the server's, which chose whether to send the
        # response.
        return cls(
            [e for e in found if e.similarity >= threshold], found[0].similarity, found[0].id
        )


@dataclass(frozen=True, slots=True)
class ScopeStats:
    """Row and hit counts of one scope."""

    rows: int
    """Rows stored (expired ones included until purged)."""
    hits: int
    """Hits counted on those rows (flushed counts)."""
    expired_rows: int
    """Rows past their ``expires_at`` and not purged yet."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What :meth:`PgVectorStore.stats` reports."""

    rows: int
    """All rows of the table."""
    hits: int
    """Sum of the hit counts."""
    expired_rows: int
    """Rows past their ``expires_at`` and not purged yet."""
    table_bytes: int
    """``pg_total_relation_size``: heap, indexes (HNSW included) and TOAST."""
    scopes: dict[str, ScopeStats]
    """Per scope (``""`` is the unscoped bucket)."""
    nearest_similarity: dict[str, tuple[int, ...]]
    """Lookups of every process that ran a similarity search (exact hits excluded), by
    outcome: how many had their nearest entry in each of ``SIMILARITY_BUCKETS``
    buckets of similarity (see :func:`similarity_bucket`), as flushed so far."""

    @classmethod
    def from_rows(
        cls,
        scope_rows: list[tuple[Any, ...]],
        table_bytes: int,
        counted: list[tuple[Any, ...]],
    ) -> Self:
        """From (scope, rows, hits, expired rows) and (outcome, bucket, lookups) rows."""
        nearest: dict[str, list[int]] = {}
        for outcome, bucket, lookups in counted:
            if 0 <= bucket < SIMILARITY_BUCKETS:
                nearest.setdefault(str(outcome), [0] * SIMILARITY_BUCKETS)[bucket] += int(lookups)
        scopes = {
            str(r[0]): ScopeStats(rows=int(r[1]), hits=int(r[2]), expired_rows=int(r[3]))
            for r in scope_rows
        }
        return cls(
            rows=sum(v.rows for v in scopes.values()),
            hits=sum(v.hits for v in scopes.values()),
            expired_rows=sum(v.expired_rows for v in scopes.values()),
            table_bytes=table_bytes,
            scopes=scopes,
            nearest_similarity={k: tuple(v) for k, v in sorted(nearest.items())},
        )


def similarity_bucket(similarity: float) -> int:
    """The bucket of ``similarity`` among ``SIMILARITY_BUCKETS``."""
    return min(SIMILARITY_BUCKETS - 1, max(0, int(similarity * SIMILARITY_BUCKETS)))
