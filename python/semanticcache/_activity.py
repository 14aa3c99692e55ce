"""What the admin dashboard shows of this process's lookups: hits and lookups over the
last minutes, and the near misses it saw.

The counts are kept in this process's memory, bounded (a fixed number of time slots), and
cost a lookup one counter update; a near miss also costs two keyed digests. A near miss
is a lookup that missed although an entry came close: stage 2 refused a candidate that
passed the stage-1 gate (``rejected``, ``disagreement``, ``unverified``), or the nearest
entry was within :data:`NEAR_MISS_MARGIN` below the gate. It is kept as digests only: the
keyed digest of the lookup text (the one the middleware logs), the candidate's entry
token (what the admin endpoint takes), the similarity, the reason, the scope and the
time; never the text. Each one goes to ``on_near_miss`` (the background writer that puts
it in Postgres, where every process reads it), and the last :data:`NEAR_MISSES` stay in
memory as well, for when Postgres cannot be read.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from semanticcache import _native
from semanticcache._entry_token import entry_token
from semanticcache._results import CacheLookup
from semanticcache._storage.near_misses import NearMiss

__all__ = ["NEAR_MISSES", "NEAR_MISS_MARGIN", "SLOT_SECONDS", "Activity", "NearMiss"]

NEAR_MISS_MARGIN: Final = 0.1
"""How far below the stage-1 gate a plain miss's nearest entry may be and still count
as a near miss."""
NEAR_MISSES: Final = 100
"""Near misses kept in this process's memory (the most recent)."""
SLOT_SECONDS: Final = 10
"""Width of one time slot of the timeline."""
_SLOTS: Final = 60
_REFUSED: Final = frozenset({"rejected", "disagreement", "unverified"})
# As long as the middleware's log digests, so a near miss matches its request's log line.
_DIGEST_HEX: Final = 16


@dataclass(frozen=True, slots=True)
class Slot:
    """Lookups in one :data:`SLOT_SECONDS` slot."""

    start: int
    lookups: int
    hits: int


class Activity:
    """This process's recent lookups, for the dashboard."""

    def __init__(
        self,
        key: bytes,
        table: str,
        gate: Callable[[], float],
        *,
        clock: Callable[[], float] = time.time,
        on_near_miss: Callable[[NearMiss], None] | None = None,
    ) -> None:
        self._key = key
        self._on_near_miss = on_near_miss
        self._table = table
        self._gate = gate
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[list[int]] = deque(maxlen=_SLOTS)  # [start, lookups, hits]
        self._near: deque[NearMiss] = deque(maxlen=NEAR_MISSES)
        self.started = clock()
        self.lookups = 0
        """Lookups since this process started."""
        self.hits = 0
        """Hits among them: each one an upstream call not made."""

    def record(self, text: str, result: CacheLookup, *, scope: str = "") -> None:
        """Count one lookup of ``text`` (in ``scope``); keep it when it is a near miss."""
        now = self._clock()
        start = int(now // SLOT_SECONDS) * SLOT_SECONDS
        with self._lock:
            self.lookups += 1
            self.hits += result.hit is not None
            if not self._slots or self._slots[-1][0] != start:
                self._slots.append([start, 0, 0])
            slot = self._slots[-1]
            slot[1] += 1
            if result.hit is not None:
                slot[2] += 1
        near = self._near_miss(result)
        if near is None:
            return
        similarity, entry_id = near
        digest = _native.hmac_sha256_hex(
            self._key, text.encode("utf-8", "surrogatepass"), _DIGEST_HEX
        )
        token = entry_token(self._key, self._table, entry_id) if entry_id is not None else None
        near_miss = NearMiss(now, scope, digest, token, similarity, result.reason)
        with self._lock:
            self._near.append(near_miss)
        if self._on_near_miss is not None:
            self._on_near_miss(near_miss)

    def _near_miss(self, result: CacheLookup) -> tuple[float, int | None] | None:
        if result.hit is not None:
            return None
        if result.reason in _REFUSED and result.best_similarity is not None:
            return result.best_similarity, result.candidate_id
        nearest = result.nearest_similarity
        if (
            result.reason == "miss"
            and nearest is not None
            and math.isfinite(nearest)
            and nearest >= self._gate() - NEAR_MISS_MARGIN
        ):
            return nearest, result.candidate_id
        return None

    def timeline(self) -> list[Slot]:
        """The last slots, oldest first, with the empty ones filled in (up to now)."""
        now = self._clock()
        last = int(now // SLOT_SECONDS) * SLOT_SECONDS
        with self._lock:
            counted = {s[0]: s for s in self._slots}
        slots = []
        for index in range(_SLOTS - 1, -1, -1):
            start = last - index * SLOT_SECONDS
            found = counted.get(start)
            slots.append(Slot(start, found[1], found[2]) if found else Slot(start, 0, 0))
        return slots

    def near_misses(self, scope: str | None = None) -> list[NearMiss]:
        """This process's most recent near misses (of ``scope`` alone, when given),
        newest first."""
        with self._lock:
            kept = list(reversed(self._near))
        return kept if scope is None else [n for n in kept if n.scope == scope]
