"""What a demo run got: the outcome of each request, and the summary of them all."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from semanticcache._cli.demo.questions import Question

__all__ = ["Outcome", "summary"]


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
    latency_ms: float
    served_group: str
    """The question group whose answer came back."""

    @property
    def hit(self) -> bool:
        """Whether the cache answered."""
        return self.cache == "HIT"

    @property
    def false_hit(self) -> bool:
        """A hit that answered a different question group."""
        return self.hit and self.served_group != self.question.group


def _p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summary(
    outcomes: Sequence[Outcome], upstream_calls: int, seconds: float, saved_ms: float
) -> list[str]:
    """The summary lines."""
    n = len(outcomes)
    hits = [o for o in outcomes if o.hit]
    exact = sum(1 for o in hits if o.match == "exact")
    false_hits = [o for o in hits if o.false_hit]
    errors = sum(1 for o in outcomes if o.cache not in ("HIT", "MISS"))
    hit_p50 = _p50([o.latency_ms for o in hits])
    miss_p50 = _p50([o.latency_ms for o in outcomes if not o.hit])
    rate = 100 * len(hits) / n if n else 0.0
    misses = n - len(hits)
    lines = [
        "summary",
        f"  requests        {n} in {seconds:.1f} s",
        f"  hit rate        {rate:.1f} %  ({len(hits)} hits: {exact} exact, "
        f"{len(hits) - exact} semantic; {misses} misses"
        + (f", {errors} bypassed or failed)" if errors else ")"),
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
    # A miss for a question whose group was asked before: the cache had its answer, but
    # the wording scored below the threshold (the price of few false hits).
    seen: set[str] = set()
    missed = 0
    for o in outcomes:
        if o.cache == "MISS" and o.question.group in seen:
            missed += 1
        seen.add(o.question.group)
    if missed:
        lines.append(
            f"  missed          {missed} paraphrase{'s' if missed != 1 else ''} of earlier "
            "questions scored below the threshold"
        )
    saved = n - upstream_calls
    lines.append(
        f"  upstream calls  {upstream_calls} of {n}: {saved} saved "
        f"({100 * saved / n if n else 0.0:.1f} %), about {saved_ms / 1000:.1f} s of LLM time"
    )
    return lines
