"""What a lookup returns: the hit, or why there was none, and the cache's statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from semanticcache._storage.pgvector import ScopeStats

__all__ = ["DECIDED_MISSES", "CacheHit", "CacheLookup", "CacheStats", "LookupReason", "exact_hit"]

LookupReason = Literal[
    "hit",
    "miss",
    "rejected",
    "disagreement",
    "unverified",
    "embed_timeout",
    "embed_error",
    "store_timeout",
    "store_error",
    "verify_timeout",
    "verify_error",
    "breaker_open",
]
"""Why a lookup ended as it did: ``hit``; ``miss`` (nothing similar enough);
``rejected`` (the best candidate passed ``threshold`` but not ``rejection_threshold``);
``disagreement`` (candidates passed ``threshold``, but none agreed with the lookup text on
numbers, negation, names, opposites, direction and code: see :mod:`semanticcache._agreement`);
``unverified`` (the verifier judged no candidate to want the same answer); or the
dependency failure that made it a miss."""

DECIDED_MISSES: Final[frozenset[LookupReason]] = frozenset(
    {"miss", "rejected", "disagreement", "unverified"}
)
"""The reasons of a miss the cache decided on; the others are dependency failures."""


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached response found for a lookup."""

    response: bytes
    """The stored response bytes."""
    similarity: float
    """Cosine similarity between the lookup and the stored text (1.0 for exact)."""
    match: Literal["exact", "semantic"]
    """``exact``: same (normalized) lookup text; ``semantic``: a similar one."""
    entry_id: int
    """Id of the stored entry."""
    created_at: datetime
    """When the entry was stored (timezone-aware)."""


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """The full outcome of :meth:`SemanticCache.lookup`: the hit, or why there was none."""

    hit: CacheHit | None
    """The hit, or ``None``."""
    reason: LookupReason
    """``hit``, or why the lookup missed (see :data:`LookupReason`)."""
    best_similarity: float | None = None
    """Similarity of the best stage-1 candidate (also when stage 2 rejected it)."""
    candidates: int = 0
    """How many stage-1 candidates passed ``threshold`` (0 on the exact path)."""
    nearest_similarity: float | None = None
    """Similarity of the nearest entry of the partition, whether or not it passed
    ``threshold``: what a miss missed by (1.0 for an exact hit). ``None`` when no search
    ran (a failure) or the partition holds no live entry."""
    probability: float | None = None
    """The verifier's probability that the served candidate (on a hit) or the best one it
    scored (``unverified``) wants the same answer; ``None`` when it did not run."""
    candidate_id: int | None = None
    """Id of the entry a miss came closest to: the best stage-1 candidate when stage 2
    refused it, else the nearest entry; ``None`` on a hit or when no search ran."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What :meth:`SemanticCache.stats` reports."""

    rows: int
    """Rows in this embedder's table (expired ones included until purged)."""
    hits: int
    """Hits counted on those rows, across all processes."""
    expired_rows: int
    """Rows past their expiry, not purged yet (never served)."""
    table_bytes: int
    """Size of the table with its indexes and TOAST, in bytes."""
    scopes: dict[str, ScopeStats]
    """Rows and hits per scope (``""`` is the unscoped bucket)."""
    lookups: dict[str, int]
    """Lookups of this process by outcome (:data:`LookupReason`) since it started."""
    nearest_similarity: dict[str, tuple[int, ...]]
    """For the lookups of every process that ran a similarity search (exact hits
    excluded), by outcome (``hit``, ``miss``, ``rejected``, ``disagreement``,
    ``unverified``): how many had their nearest entry at each similarity, in 100 buckets
    of 0.01 (bucket ``i`` counts ``i / 100 <= similarity < (i + 1) / 100``; 1.0 falls in
    the last, negative similarities in the first). Flushed to Postgres with the hit counts
    (this process's pending ones first). The distribution to set ``threshold`` from: where
    the misses pile up just below it, a lower threshold would serve them."""


def exact_hit(response: bytes, entry_id: int, created_at: datetime) -> CacheLookup:
    """The outcome of an exact hit: same lookup text, served whatever the thresholds."""
    hit = CacheHit(response, 1.0, "exact", entry_id, created_at)
    return CacheLookup(hit, "hit", best_similarity=1.0, nearest_similarity=1.0)
