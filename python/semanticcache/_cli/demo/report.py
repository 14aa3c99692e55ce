"""What a demo run got: the outcome of each request, and the summary of them all."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from semanticcache._cli.demo.questions import Question

__all__ = ["Decision", "Outcome", "summary"]


@dataclass(frozen=True, slots=True)
class Decision:
    """How the demo's cache decides a semantic hit (printed before and after the run)."""

    gate: float
    """The similarity a stage-1 candidate needs: the verifier's floor, or the threshold."""
    gate_source: str
    verifier: str | None = None
    """The verifier's name; ``None`` when stage 2 is off (similarity alone decides)."""
    probability: str = ""
    """The verifier's probability thresholds, described."""
    probability_source: str = ""
    candidates: int = 1
    """How many nearest entries stage 1 hands to stage 2."""
    agreement_check: bool = True

    def lines(self) -> list[str]:
        """How a lookup is decided, for the lines before the table."""
        if self.verifier is None:
            check = "after the agreement check" if self.agreement_check else "no agreement check"
            return [
                f"threshold: {self.gate} ({self.gate_source})",
                f"stage 2: off, similarity alone decides ({check})",
            ]
        nearest = (
            "the nearest cached question"
            if self.candidates == 1
            else f"the {self.candidates} nearest cached questions"
        )
        check = "the agreement check, then " if self.agreement_check else ""
        return [
            f"stage 1: {nearest}, if its similarity is >= {self.gate} ({self.gate_source})",
            f"stage 2: {check}the verifier {self.verifier}:",
            "         a hit if the probability that both questions want the same answer is "
            f">= {self.probability}",
            f"         ({self.probability_source})",
        ]

    def summary_line(self) -> str:
        if self.verifier is None:
            return f"off: similarity >= {self.gate} decides"
        return f"verifier {self.verifier} (floor {self.gate}), hit at p >= {self.probability}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request got."""

    index: int
    question: Question
    cache: str
    """``X-Cache``: HIT, MISS, BYPASS or ERROR."""
    match: str | None
    """``exact`` or ``semantic`` on a hit."""
    similarity: float | None
    """The served entry's similarity on a hit; on a miss, the best candidate's (or, with
    none above the gate, the nearest entry's); ``None`` when nothing was cached yet."""
    latency_ms: float
    served_group: str
    """The question group whose answer came back."""
    reason: str | None = None
    """The cache lookup's reason (``hit``, ``miss``, ``unverified``, ...)."""
    probability: float | None = None
    """The verifier's probability for the candidate, when it ran."""

    @property
    def hit(self) -> bool:
        """Whether the cache answered."""
        return self.cache == "HIT"

    @property
    def false_hit(self) -> bool:
        """A hit that answered a different question group."""
        return self.hit and self.served_group != self.question.group

    @property
    def refused_by(self) -> str | None:
        """What refused a candidate above the stage-1 gate, on a miss."""
        if self.hit:
            return None
        return _REFUSERS.get(self.reason or "")


_REFUSERS = {
    "unverified": "the verifier",
    "disagreement": "the agreement check",
    "rejected": "the rejection threshold",
}


def _p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _kinds(outcomes: Sequence[Outcome], look_alikes: Mapping[str, set[str]]) -> list[str]:
    """Each request's kind when it was sent: ``repeat`` (the same text was asked before),
    ``paraphrase`` (another question of its group was), ``near miss`` (no question of its
    group was, but one of a look-alike group was: serving that answer is a false hit) or
    ``new``."""
    texts: set[str] = set()
    groups: set[str] = set()
    found: list[str] = []
    for o in outcomes:
        group = o.question.group
        if o.question.text in texts:
            found.append("repeat")
        elif group in groups:
            found.append("paraphrase")
        elif look_alikes.get(group, set()) & groups:
            found.append("near miss")
        else:
            found.append("new")
        texts.add(o.question.text)
        groups.add(group)
    return found


def _refusals(outcomes: Sequence[Outcome], gate: str) -> str:
    """The misses of ``outcomes`` by what refused them."""
    by = Counter(o.refused_by or gate for o in outcomes if o.cache == "MISS")
    parts = [f"{n} by {what}" for what, n in by.most_common() if what != gate]
    if by[gate]:
        parts.append(f"{by[gate]} below {gate}")
    return ", ".join(parts) if parts else "none"


def _failed(outcomes: Sequence[Outcome]) -> str:
    failed = sum(1 for o in outcomes if o.cache not in ("HIT", "MISS"))
    return f"; {failed} bypassed or failed" if failed else ""


def summary(
    outcomes: Sequence[Outcome],
    upstream_calls: int,
    seconds: float,
    saved_ms: float,
    *,
    decision: Decision,
    look_alikes: Mapping[str, set[str]],
) -> list[str]:
    """The summary lines; ``look_alikes`` maps a group to the groups worded like it."""
    n = len(outcomes)
    hits = [o for o in outcomes if o.hit]
    exact = sum(1 for o in hits if o.match == "exact")
    false_hits = [o for o in hits if o.false_hit]
    errors = sum(1 for o in outcomes if o.cache not in ("HIT", "MISS"))
    hit_p50 = _p50([o.latency_ms for o in hits])
    miss_p50 = _p50([o.latency_ms for o in outcomes if not o.hit])
    rate = 100 * len(hits) / n if n else 0.0
    misses = n - len(hits)
    gate = "the floor" if decision.verifier is not None else "the threshold"
    kind = _kinds(outcomes, look_alikes)
    paraphrases = [o for o, k in zip(outcomes, kind, strict=True) if k == "paraphrase"]
    near = [o for o, k in zip(outcomes, kind, strict=True) if k == "near miss"]
    served = sum(1 for o in paraphrases if o.hit and not o.false_hit)
    wrong = sum(1 for o in paraphrases if o.false_hit)
    trapped = sum(1 for o in near if o.hit)
    refused = sum(1 for o in near if o.cache == "MISS")
    lines = [
        "summary",
        f"  requests        {n} in {seconds:.1f} s",
        f"  hit rate        {rate:.1f} %  ({len(hits)} hits: {exact} exact, "
        f"{len(hits) - exact} semantic; {misses} misses"
        + (f", {errors} bypassed or failed)" if errors else ")"),
        f"  stage 2         {decision.summary_line()}",
        f"  paraphrases     {served} of {len(paraphrases)} served"
        + (f", {wrong} with another group's answer" if wrong else "")
        + f"; refused: {_refusals(paraphrases, gate)}{_failed(paraphrases)}",
        f"  near misses     {refused} of {len(near)} refused: {_refusals(near, gate)}"
        + (f"; {trapped} served" if trapped else "")
        + _failed(near),
        f"  false hits      {len(false_hits)}"
        + (
            "  (every hit answered its own question group)"
            if not false_hits
            else "  (" + "; ".join(f"#{o.index} got {o.served_group}" for o in false_hits) + ")"
        ),
    ]
    if hit_p50 is not None and miss_p50 is not None:
        lines.append(
            f"  p50 latency     hit {hit_p50:.0f} ms, miss {miss_p50:.0f} ms "
            f"({miss_p50 / max(hit_p50, 0.001):.0f}x faster)"
        )
    elif miss_p50 is not None:
        lines.append(f"  p50 latency     miss {miss_p50:.0f} ms (no hits)")
    saved = n - upstream_calls
    lines.append(
        f"  upstream calls  {upstream_calls} of {n}: {saved} saved "
        f"({100 * saved / n if n else 0.0:.1f} %), about {saved_ms / 1000:.1f} s of LLM time"
    )
    return lines
