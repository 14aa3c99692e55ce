"""Threshold calibration from labelled question pairs, through the real cache.

For each pair (``a``, ``b``, ``same_answer``), ``a`` is stored in a cache partition of
its own (an empty cache as far as ``b`` can see) and ``b`` is looked up there, through
:meth:`SemanticCache.put` / :meth:`SemanticCache.get` on Postgres + pgvector. The cache
runs with a threshold near zero, so every lookup reports the similarity pgvector
computed; a hit at threshold ``t`` is then ``similarity >= t`` and the agreement
check's verdict (when the cache runs with it), exactly the cache's own rule. From those:
ROC-AUC, and per threshold the hit rate on ``same_answer`` pairs, the false-hit rate on
the others and the precision of hits.

:func:`judge_pairs` answers the other question: would the cache, as configured, serve
the stored text's answer to the lookup text? It makes exactly the decision a lookup
makes (stage-1 gate, agreement check, rejection threshold, verifier), without Postgres.

Used by ``semcache calibrate`` and by the answer-quality benchmark
(``benches/quality/run.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from semanticcache._breaker import CircuitBreaker
from semanticcache._cache import SemanticCache
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._embedders.factory import get_embedder
from semanticcache._guard import Guard, Unavailable
from semanticcache._judge import Candidate, Judge
from semanticcache._key import CacheKey
from semanticcache._results import LookupReason
from semanticcache._settings import CacheSettings
from semanticcache._settings_process import get_cache_settings
from semanticcache._verifier import load_verifier
from semanticcache.errors import ConfigurationError, EmbedderError, StorageError

__all__ = [
    "MAX_FALSE_HIT_RATE",
    "MISS",
    "NEAR_ZERO",
    "THRESHOLDS",
    "Judgement",
    "Pair",
    "Row",
    "judge_pairs",
    "load_pairs",
    "plot_rates",
    "rates",
    "roc_auc",
    "score_pairs",
    "threshold_for_false_hit_rate",
]

THRESHOLDS: Final = [round(0.80 + 0.01 * i, 2) for i in range(18)]  # 0.80 .. 0.97
"""The thresholds of the per-threshold tables and plots."""
MAX_FALSE_HIT_RATE: Final = 0.01
"""The default false-hit rate target."""
# The cache refuses a threshold of 0; this is below any cosine similarity of interest.
NEAR_ZERO: Final = 1e-6
"""The threshold the scoring cache runs with (every lookup reports its similarity)."""
MISS: Final = -1.0
"""The score of a lookup that returned nothing (a negative cosine)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled pair."""

    id: str
    a: str
    b: str
    same_answer: bool


def load_pairs(path: Path, limit: int | None = None) -> list[Pair]:
    """The pairs of a JSONL file, the first ``limit``.

    Each line is an object with ``a`` and ``b`` (non-empty strings), ``same_answer``
    (a boolean, or 0 / 1) and optionally ``id`` (default: the line number). Blank lines
    are skipped. A malformed line raises :class:`~semanticcache.errors.ConfigurationError`
    naming the file and line; an unreadable file raises ``OSError``.
    """
    pairs: list[Pair] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            pairs.append(_parse_pair(line, f"{path}:{number}", str(number)))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def _parse_pair(line: str, where: str, default_id: str) -> Pair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ConfigurationError(f"{where}: expected a JSON object with a, b, same_answer")
    a, b, same = row.get("a"), row.get("b"), row.get("same_answer")
    if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
        raise ConfigurationError(f"{where}: 'a' and 'b' must be non-empty strings")
    # bool is an int: True/False and 0/1 are accepted, other numbers are not.
    if same not in (True, False) or isinstance(same, float):
        raise ConfigurationError(f"{where}: 'same_answer' must be true, false, 1 or 0")
    return Pair(str(row.get("id", default_id)), a, b, bool(same))


async def score_pairs(
    cache: SemanticCache,
    pairs: Sequence[Pair],
    *,
    pg_uri: str | None = None,
    concurrency: int = 32,
    scope: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[float, bool]]:
    """For each pair, the similarity the cache reports for its ``b`` after storing its
    ``a`` (``MISS`` when nothing came back, i.e. a negative cosine), and whether the
    cache's agreement check let that candidate through (always true when the cache runs
    without it).

    ``cache`` must run with ``threshold=NEAR_ZERO`` and no ``rejection_threshold``. Each
    pair gets its own partition (scope ``scope``, route = the pair's position), so the
    entries can be removed after with ``cache.purge(scope=scope)``. ``progress(done,
    total)`` is called as puts and lookups finish (``total`` is twice the pairs). A
    lookup that fails (a dependency error) raises :class:`StorageError`: a calibration
    must not count outages as misses.
    """
    gate = asyncio.Semaphore(concurrency)
    total = 2 * len(pairs)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def key(index: int, text: str) -> CacheKey:
        return CacheKey(text=text, scope=scope, route=f"calibration/{index}")

    async def store(index: int, pair: Pair) -> None:
        async with gate:
            await cache.put(key(index, pair.a), b"answer to a", raise_errors=True)
        tick()

    async def look_up(index: int, pair: Pair) -> tuple[float, bool]:
        async with gate:
            result = await cache.lookup(key(index, pair.b))
        tick()
        if result.reason not in ("hit", "miss", "disagreement"):
            raise StorageError(f"lookup of pair {index} failed: {result.reason}")
        similarity = MISS if result.best_similarity is None else result.best_similarity
        return similarity, result.reason != "disagreement"

    await asyncio.gather(*(store(i, p) for i, p in enumerate(pairs)))
    if pg_uri is not None:
        # Fresh statistics let the planner see that a partition holds one row, so the
        # lookup reads it by the (partition, digest) btree instead of filtering an HNSW
        # scan: every lookup then sees its pair's `a`, whatever the index would return.
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as conn:
            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(cache.table)))
    return list(await asyncio.gather(*(look_up(i, p) for i, p in enumerate(pairs))))


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the cache would do with one ``(stored_text, lookup_text)`` pair."""

    served: bool
    """Whether the lookup text would be served the stored text's answer."""
    reason: LookupReason
    """``hit``, or why not: ``miss`` (below the stage-1 gate), ``disagreement``,
    ``rejected`` or ``unverified``."""
    similarity: float
    """The embedder's cosine similarity of the two texts."""
    probability: float | None
    """The verifier's probability (``None`` when it is off or the pair did not reach it)."""


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms else math.nan


async def judge_pairs(
    pairs: Sequence[tuple[str, str]],
    *,
    settings: CacheSettings | None = None,
    embedder: BaseEmbedder | None = None,
    concurrency: int = 64,
) -> list[Judgement]:
    """For each ``(stored_text, lookup_text)``, whether a lookup of ``lookup_text`` in a
    partition holding only ``stored_text`` would be served, and the scores behind it.

    ``settings`` default to the environment's; ``embedder`` to the one they configure.
    The decision is the lookup's own (:class:`~semanticcache._judge.Judge`); the similarity
    is computed here rather than by pgvector, so a pair within float rounding of the gate
    may differ. An embedder or verifier failure raises
    :class:`~semanticcache.errors.EmbedderError`: a judgement must not count outages.
    """
    given: object = pairs  # checked as what a caller may really pass
    if isinstance(given, str | bytes):
        raise ConfigurationError("judge_pairs takes a sequence of (stored_text, lookup_text)")
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ConfigurationError(f"judge_pairs: pair {index} is not (stored, lookup)")
        if not all(isinstance(text, str) for text in pair):
            raise ConfigurationError(f"judge_pairs: pair {index} holds a non-string")
    settings = settings if settings is not None else get_cache_settings()
    embedder = embedder if embedder is not None else get_embedder(settings)
    if not pairs:
        return []
    verifier = load_verifier(settings, embedder)
    breaker = CircuitBreaker("verifier", failures=1_000_000, cooldown=1.0)
    judge = Judge(settings, verifier, Guard("verify", breaker, None))
    stored = await embedder.embed([a for a, _ in pairs])
    looked_up = await embedder.embed([b for _, b in pairs])
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Judgement:
        stored_text, lookup_text = pairs[index]
        similarity = _cosine(stored[index], looked_up[index])
        async with gate:
            try:
                verdict = await judge.choose(lookup_text, [Candidate(similarity, stored_text)])
            except Unavailable as exc:
                raise EmbedderError(f"the verifier failed: {exc.describe()}") from exc.cause
        served = verdict.served is not None
        return Judgement(served, verdict.reason, similarity, verdict.probability)

    return list(await asyncio.gather(*(one(i) for i in range(len(pairs)))))


@dataclass(slots=True)
class Row:
    """Outcome at one threshold."""

    threshold: float
    hit_rate: float
    false_hit_rate: float
    precision: float


def rates(
    scores: Sequence[float], labels: Sequence[bool], threshold: float, keep: Sequence[bool]
) -> Row:
    """Hit rate on positives, false-hit rate on negatives and precision of hits when a hit
    is ``score >= threshold`` and ``keep`` (a stage-2 verdict) is true."""
    positives = sum(labels)
    negatives = len(labels) - positives
    tp = sum(1 for s, y, k in zip(scores, labels, keep, strict=True) if y and k and s >= threshold)
    fp = sum(
        1 for s, y, k in zip(scores, labels, keep, strict=True) if not y and k and s >= threshold
    )
    return Row(
        threshold=threshold,
        hit_rate=tp / positives if positives else 0.0,
        false_hit_rate=fp / negatives if negatives else 0.0,
        precision=tp / (tp + fp) if tp + fp else 1.0,
    )


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties: half);
    ``nan`` without both classes."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # average rank of a tie group, 1-based
        i = j + 1
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = math.fsum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def threshold_for_false_hit_rate(
    scores: Sequence[float],
    labels: Sequence[bool],
    keep: Sequence[bool] | None = None,
    max_rate: float = MAX_FALSE_HIT_RATE,
) -> Row:
    """The lowest threshold (to 0.001) whose false-hit rate is at most ``max_rate``."""
    gate = [True] * len(scores) if keep is None else keep
    low, high = 0, 1000
    # The false-hit rate only falls as the threshold rises: binary search on the grid.
    while low < high:
        mid = (low + high) // 2
        if rates(scores, labels, mid / 1000, gate).false_hit_rate <= max_rate:
            high = mid
        else:
            low = mid + 1
    return rates(scores, labels, low / 1000, gate)


def plot_rates(
    curves: Sequence[tuple[str, Sequence[Row]]],
    path: Path,
    *,
    max_rate: float = MAX_FALSE_HIT_RATE,
    chosen: float | None = None,
) -> None:
    """A PNG of hit rate (solid) and false-hit rate (dashed) against the threshold, one
    colour per ``(name, rows)`` curve; ``max_rate`` as a grey line, ``chosen`` (a
    threshold) as a dotted one. Needs matplotlib (the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for index, (name, rows) in enumerate(curves):
        colour = f"C{index}"
        xs = [row.threshold for row in rows]
        # The log scale has no 0: an empty rate sits at the bottom of the axis instead.
        hits = [max(100 * row.hit_rate, 1e-2) for row in rows]
        false_hits = [max(100 * row.false_hit_rate, 1e-2) for row in rows]
        ax.plot(xs, hits, color=colour, label=f"{name}: hits")
        ax.plot(xs, false_hits, color=colour, linestyle="--", label=f"{name}: false hits")
    ax.axhline(100 * max_rate, color="grey", linewidth=0.8)
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("similarity threshold")
    ax.set_ylabel("% of same-answer pairs hit (solid) / other pairs hit (dashed)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
