"""The lookup path: hot entries, Redis, the exact probe, the similarity search, the judge."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from semanticcache._guard import StoreCall, Unavailable
from semanticcache._judge import Candidate, Judge
from semanticcache._key import CacheKey, lookup_digest
from semanticcache._memo import BadVector, Embeddings
from semanticcache._offload import off_loop_if_long
from semanticcache._redis_copies import RedisCopies
from semanticcache._results import CacheHit, CacheLookup, LookupReason, exact_hit
from semanticcache._settings import CacheSettings
from semanticcache._storage.hot import FENCED, HotEntries, HotEntry
from semanticcache._storage.pgvector import BinaryVector, PgVectorStore, SearchResult, StoredEntry
from semanticcache._tracing import SEARCH
from semanticcache.errors import ConfigurationError

if TYPE_CHECKING:
    from semanticcache._tracing import Tracing

# Longer lookup texts take the exact-first path even with a cheap embedder: embedding
# grows with the text, while the exact probe does not (figures: docs/cache.md).
_EMBED_FIRST_MAX_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class Target:
    """What a lookup or a put is about: the partition, the exact text and its digest."""

    partition: bytes
    text_digest: bytes
    text: str
    scope: str
    route: str = ""
    """The key's route, as it keyed the partition (a put stores its
    :func:`~semanticcache._key.route_target`, for purge)."""
    model: str | None = None

    @property
    def slot(self) -> bytes:
        """The hot entries' key of this exact text."""
        return self.partition + self.text_digest


async def target_of(key: CacheKey | str, partition: bytes | None) -> Target:
    """What ``key`` (or a text in ``partition``, default ``b""``) is about."""
    if isinstance(key, CacheKey):
        if partition is not None:
            raise ConfigurationError("pass either a CacheKey or a text with partition=, not both")
        return Target(key.partition, key.text_digest, key.text, key.scope, key.route, key.model)
    if not isinstance(key, str):
        raise ConfigurationError("key must be a CacheKey or a str")
    if partition is None:
        partition = b""
    elif not isinstance(partition, bytes):
        raise ConfigurationError("partition must be bytes")
    digest = await off_loop_if_long(len(key), lambda: lookup_digest(key))
    return Target(partition, digest, key, "")


class LookupPath:
    """One lookup, cheapest answer first; a dependency failure raises :class:`Unavailable`."""

    def __init__(
        self,
        settings: CacheSettings,
        *,
        store: PgVectorStore,
        store_call: StoreCall,
        embeddings: Embeddings,
        hot: HotEntries,
        redis: RedisCopies,
        judge: Judge,
        on_search: Callable[[float], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._on_search = on_search  # told the seconds of each search (metrics)
        self._tracing = tracing
        self._judge = judge
        self._store = store
        self._store_call = store_call
        self._embeddings = embeddings
        self._hot = hot
        self._redis = redis
        self._embed_first = embeddings.embedder.embeds_cheaply

    async def run(self, target: Target) -> CacheLookup:
        if self._hot.enabled:
            remembered = self._hot.get(target.slot)
            if remembered is not None:
                return exact_hit(remembered.response, remembered.entry_id, remembered.created_at)
        generation = self._hot.generation
        redis_answered = False
        # Read before Postgres is: a refill written under it is void if the epoch
        # advanced after the read (see storage/redis_tier.py).
        epoch = self._hot.redis_epoch
        if self._redis.redis is not None and epoch is not None:
            redis_answered, blob = await self._redis.get(target.partition, target.text_digest)
            # A copy from before the last epoch may be older than the row: not served.
            if blob is not None and blob.epoch >= epoch:
                return exact_hit(blob.response, blob.entry_id, blob.created_at)
        # FENCED: a replica may be behind the last notice, its row no copy to keep.
        refill = epoch if redis_answered and generation != FENCED else None
        if self._embed_first and len(target.text) <= _EMBED_FIRST_MAX_CHARS:
            return await self._embed_first_lookup(target, refill=refill, generation=generation)
        memo_key = await self._embeddings.memo_key(target.text)
        known = self._embeddings.memo.get(memo_key)
        if known is not None:
            # The vector costs nothing now (a paraphrase asked again): the exact probe
            # and the search in one round trip, as for a cheap embedder.
            return await self._one_trip(target, known, refill=refill, generation=generation)
        if not redis_answered:
            # Without Redis (or with Redis unreachable) Postgres answers the exact path.
            # When Redis answered "absent", the exact row (if Redis lost it) is still found
            # by the search below, at similarity 1: one Postgres query per hit either way.
            found = await self._exact(target, generation)
            if found is not None:
                return found
        vector = await self._embed(target.text, memo_key)
        k = self._settings.top_k_candidates
        gate = self._judge.gate
        candidates = await self._search(
            lambda: self._store.search(target.partition, vector, gate, k=k), "similarity"
        )
        # The search's rows carry no expiry: an exact row found here is not remembered.
        return await self._decide(target, candidates, refill=refill, generation=None)

    async def _search(self, make: Callable[[], Awaitable[SearchResult]], kind: str) -> SearchResult:
        if self._tracing is not None and not self._tracing.untraced():
            return await self._traced_search(make, kind)
        if self._on_search is None:
            return await self._store_call(make, read=True)
        started = time.perf_counter()
        found = await self._store_call(make, read=True)
        self._on_search(time.perf_counter() - started)
        return found

    async def _traced_search(
        self, make: Callable[[], Awaitable[SearchResult]], kind: str
    ) -> SearchResult:
        assert self._tracing is not None
        with self._tracing.leaf(SEARCH, {"semcache.search.kind": kind}) as span:
            started = time.perf_counter()
            found = await self._store_call(make, read=True)
            if self._on_search is not None:
                self._on_search(time.perf_counter() - started)
            span.set_attribute("semcache.candidates", len(found.matches))
            nearest = found.nearest
            if nearest is not None and nearest == nearest:  # NaN: no direction
                span.set_attribute("semcache.nearest_similarity", nearest)
            return found

    async def _embed(self, text: str, memo_key: bytes | None = None) -> BinaryVector:
        try:
            return await self._embeddings.embed(text, memo_key)
        except BadVector as exc:
            raise Unavailable("embed_error", "embed", exc) from exc

    async def _exact(self, target: Target, generation: int) -> CacheLookup | None:
        """The exact probe: the row of this exact text, kept among the hot entries."""
        if self._tracing is None or self._tracing.untraced():
            entry = await self._store_call(
                lambda: self._store.get_exact(target.partition, target.text_digest), read=True
            )
        else:
            with self._tracing.leaf(SEARCH, {"semcache.search.kind": "exact"}) as span:
                entry = await self._store_call(
                    lambda: self._store.get_exact(target.partition, target.text_digest), read=True
                )
                span.set_attribute("semcache.candidates", int(entry is not None))
        if entry is None:
            return None
        self._remember(target, entry, generation)
        return exact_hit(entry.response, entry.id, entry.created_at)

    async def _embed_first_lookup(
        self, target: Target, *, refill: int | None, generation: int
    ) -> CacheLookup:
        """Embed, then the exact probe and the search in one round trip (cheap embedders)."""
        try:
            vector = await self._embed(target.text)
        except Unavailable:
            # No vector (embedder error, timeout, open breaker): an exact repeat is still
            # served, as it is on the exact-first path.
            found = await self._exact(target, generation)
            if found is None:
                raise
            return found
        return await self._one_trip(target, vector, refill=refill, generation=generation)

    async def _one_trip(
        self, target: Target, vector: BinaryVector, *, refill: int | None, generation: int
    ) -> CacheLookup:
        """The exact probe and the search in one statement, with ``vector`` at hand."""
        k = self._settings.top_k_candidates
        gate = self._judge.gate
        candidates = await self._search(
            lambda: self._store.lookup(target.partition, target.text_digest, vector, gate, k=k),
            "exact_and_similarity",
        )
        # Redis answered "absent" for an exact row Postgres has: it lost the blob.
        return await self._decide(target, candidates, refill=refill, generation=generation)

    def _remember(self, target: Target, entry: StoredEntry, generation: int) -> None:
        """Keep an exact row read from Postgres among the hot entries (when on). Only
        rows that carry their expiry (the exact probe's) may be given here."""
        if self._hot.enabled:
            hot = HotEntry(entry.id, entry.response, entry.created_at, entry.expires_at)
            self._hot.remember(target.slot, hot, generation)

    async def _decide(
        self,
        target: Target,
        found: SearchResult,
        *,
        refill: int | None,
        generation: int | None,
    ) -> CacheLookup:
        """Stage 2 on the stage-1 candidates (or the exact row). ``refill``: the Redis
        epoch read before Postgres when Redis answered "absent" (the exact row found
        goes back to Redis), else ``None``. ``generation``: the hot entries' generation
        when an exact row here carries its expiry (the lookup function's exact probe),
        else ``None``."""
        candidates = found.matches
        nearest = found.nearest
        if not candidates:
            return CacheLookup(
                None, "miss", nearest_similarity=nearest, candidate_id=found.nearest_id
            )
        best = candidates[0]
        if best.text_digest == target.text_digest:
            # The exact row: served as exact whatever the thresholds.
            if generation is not None:
                self._remember(target, best, generation)
            if refill is not None:
                # Found by the search because Redis had lost its blob: give Redis the
                # blob back, off the request's path.
                with_expiry = best if generation is not None else None
                self._redis.backfill(target.partition, target.text_digest, with_expiry, refill)
            return exact_hit(best.response, best.id, best.created_at)

        verdict = await self._judge.choose(
            target.text, [Candidate(c.similarity, c.lookup_text) for c in candidates]
        )

        def outcome(
            hit: CacheHit | None, reason: LookupReason, probability: float | None
        ) -> CacheLookup:
            return CacheLookup(
                hit,
                reason,
                best_similarity=best.similarity,
                candidates=len(candidates),
                nearest_similarity=nearest,
                probability=probability,
                candidate_id=best.id if hit is None else None,
            )

        if verdict.served is None:
            return outcome(None, verdict.reason, verdict.probability)
        served = candidates[verdict.served]
        response = served.response
        if served is not best:
            # The search ships only the best candidate's response; fetch this one's.
            fetched = await self._store_call(lambda: self._store.get_response(served.id), read=True)
            if fetched is None:  # deleted or expired since the search: nothing to serve
                return outcome(None, "miss", None)
            response = fetched
        hit = CacheHit(response, served.similarity, "semantic", served.id, served.created_at)
        return outcome(hit, "hit", verdict.probability)
