"""The decision on stage-1 candidates: which one, if any, a lookup text is served.

One rule, used by every lookup and by :func:`semanticcache.calibration.judge_pairs`:
the candidates at or above the gate (``threshold``, or the verifier's floor), best first;
with ``agreement_check`` those whose text agrees with the lookup's; at or above
``rejection_threshold`` when set; then, with the verifier, the first one it judges to
want the same answer, else (without it) the first one left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from semanticcache._agreement import texts_agree
from semanticcache._guard import Guard
from semanticcache._results import LookupReason
from semanticcache._settings import CacheSettings
from semanticcache._verifier import Verifier

__all__ = ["Candidate", "Judge", "Verdict"]

# Past this many characters (query and candidates together) the agreement check runs
# on a worker thread, off the event loop (its cost: docs/cache.md).
_AGREEMENT_INLINE_CHARS: Final = 8192


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored entry as the judge sees it: its similarity and its stored text."""

    similarity: float
    text: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The index of the candidate to serve (or ``None``) and why."""

    served: int | None
    reason: LookupReason
    probability: float | None = None
    """The verifier's probability for the served candidate, or the best one it scored."""


class Judge:
    """Stage 2 of every lookup; ``verifier`` runs under ``guard`` (budget and breaker)."""

    def __init__(
        self, settings: CacheSettings, verifier: Verifier | None, guard: Guard | None
    ) -> None:
        if verifier is not None and guard is None:
            raise ValueError("a verifier needs a guard")
        self._settings = settings
        self.verifier = verifier
        self._guard = guard

    @property
    def gate(self) -> float:
        """The similarity a stage-1 candidate needs."""
        if self.verifier is not None:
            return self.verifier.floor
        return self._settings.threshold

    async def choose(self, query: str, candidates: Sequence[Candidate]) -> Verdict:
        """The verdict on ``candidates`` (best first) for the lookup text ``query``.

        A verifier failure raises :class:`~semanticcache._guard.Unavailable`."""
        gate = self.gate
        pool = [i for i, c in enumerate(candidates) if c.similarity >= gate]
        if not pool:
            return Verdict(None, "miss")
        settings = self._settings
        verifier = self.verifier
        if settings.agreement_check:
            # Numbers, negation, names, opposites, direction, code: what an embedding
            # confuses with a paraphrase ("2 + 2", "2 + 3") and a rule decides surely.
            pool = await _agreeing(query, candidates, pool, every=verifier is not None)
            if not pool:
                return Verdict(None, "disagreement")
        rejection = settings.rejection_threshold
        if rejection is not None:
            first_only = pool if verifier is not None else pool[:1]
            pool = [i for i in first_only if candidates[i].similarity >= rejection]
            if not pool:
                return Verdict(None, "rejected")
        if verifier is None:
            return Verdict(pool[0], "hit")
        scored = [i for i in pool if candidates[i].text is not None]
        if not scored:
            return Verdict(None, "unverified")
        pairs = [(candidates[i].text or "", query) for i in scored]
        similarities = [candidates[i].similarity for i in scored]
        assert self._guard is not None
        probabilities = await self._guard.call(
            lambda: verifier.probabilities(pairs, similarities), inline=True
        )
        for i, probability in zip(scored, probabilities, strict=True):
            if verifier.thresholds.serves(probability, candidates[i].text or "", query):
                return Verdict(i, "hit", probability)
        return Verdict(None, "unverified", max(probabilities))


async def _agreeing(
    query: str, candidates: Sequence[Candidate], pool: list[int], *, every: bool
) -> list[int]:
    """The indexes of ``pool`` whose text agrees with ``query`` (only the first unless
    ``every``). A candidate without its text cannot be checked and never agrees."""

    def agreeing() -> list[int]:
        found: list[int] = []
        for i in pool:
            text = candidates[i].text
            if text is not None and texts_agree(query, text):
                found.append(i)
                if not every:
                    break
        return found

    size = len(query) + sum(len(candidates[i].text or "") for i in pool)
    if size <= _AGREEMENT_INLINE_CHARS:
        return agreeing()
    return await asyncio.to_thread(agreeing)
