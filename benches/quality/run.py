"""Answer-quality benchmark: labelled question pairs through the real ``SemanticCache``.

The scoring and the metrics live in :mod:`semanticcache.calibration` (shared with
``semcache calibrate``): each pair's ``a`` is stored in a partition of its own and its
``b`` looked up there, through the real ``SemanticCache`` on Postgres + pgvector. Reported
per embedder: ROC-AUC, and for each threshold the hit rate on ``same_answer`` pairs, the
false-hit rate on the others and the precision of hits; plus the lowest threshold whose
false-hit rate is at most 1 %.

Lever: a stage-2 check (:func:`stage2_agrees`) that serves a hit only when the two texts
agree on their numbers, negations and names; its effect is reported as extra rows.
``--from-scores`` re-evaluates a saved run (``--scores``) without embedding again.

    python -m benches.quality.run --embedders local,hashing \\
        [--data ../shared/evaldata/qqp_gptcache/dev.jsonl] [--limit N] \\
        [--pg-uri postgresql://...] [--json out.json] [--markdown out.md] [--plot out.png]

Without ``--pg-uri`` an embedded Postgres is started in a temporary folder and stopped
after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semanticcache import BaseEmbedder, HashingEmbedder, SemanticCache
from semanticcache.calibration import (
    MAX_FALSE_HIT_RATE,
    MISS,
    NEAR_ZERO,
    THRESHOLDS,
    Pair,
    Row,
    load_pairs,
    plot_rates,
    rates,
    roc_auc,
    score_pairs,
    threshold_for_false_hit_rate,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata"
DEFAULT_DATA = DEFAULT_DATA / "qqp_gptcache" / "dev.jsonl"


# --- stage 2: a cheap check before a hit is served ------------------------------------------

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATION = re.compile(
    r"\b(?:not|no|never|without|cannot|none|nobody|nothing|neither|nor)\b|n't\b", re.IGNORECASE
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'.&-]*")
# Capitalised words that are not names: question words and other sentence openers.
_NOT_NAMES = frozenset(
    [
        "i",
        "what",
        "how",
        "why",
        "who",
        "when",
        "where",
        "which",
        "whom",
        "whose",
        "is",
        "are",
        "was",
        "were",
        "can",
        "could",
        "do",
        "does",
        "did",
        "should",
        "shall",
        "will",
        "would",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "the",
        "a",
        "an",
        "in",
        "on",
        "of",
        "to",
        "and",
        "or",
        "for",
        "my",
        "if",
        "it",
    ]
)


def _names(text: str) -> set[str]:
    """Capitalised words after the first (a cheap stand-in for names), lower-cased."""
    words = _WORD.findall(text)
    return {w.lower() for w in words[1:] if w[0].isupper() and w.lower() not in _NOT_NAMES}


def stage2_agrees(a: str, b: str) -> bool:
    """Whether two questions agree on what a paraphrase must keep: the same numbers, both
    negated or both not, and every name of one present (in any case) in the other."""
    if set(_NUMBER.findall(a)) != set(_NUMBER.findall(b)):
        return False
    if bool(_NEGATION.search(a)) != bool(_NEGATION.search(b)):
        return False
    lower_a, lower_b = a.lower(), b.lower()
    return all(n in lower_b for n in _names(a)) and all(n in lower_a for n in _names(b))


# --- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """One embedder's outcome (with or without stage 2)."""

    name: str
    pairs: int
    auc: float
    rows: list[Row]
    at_max_fhr: Row
    seconds: float
    scores: list[float] = field(repr=False, default_factory=list)


def evaluate(
    name: str,
    scores: Sequence[float],
    pairs: Sequence[Pair],
    seconds: float,
    check: Callable[[str, str], bool] | None = None,
) -> Result:
    """Metrics for ``scores`` (optionally with a stage-2 ``check`` gating every hit)."""
    labels = [p.same_answer for p in pairs]
    keep = [True] * len(pairs) if check is None else [check(p.a, p.b) for p in pairs]
    # A refused hit is a miss: for the ROC curve it ranks below every served one.
    effective = [s if k else MISS for s, k in zip(scores, keep, strict=True)]
    return Result(
        name=name,
        pairs=len(pairs),
        auc=roc_auc(effective, labels),
        rows=[rates(scores, labels, t, keep) for t in THRESHOLDS],
        at_max_fhr=threshold_for_false_hit_rate(scores, labels, keep),
        seconds=seconds,
        scores=list(scores),
    )


def build_embedder(name: str) -> BaseEmbedder:
    """An embedder by short name: ``local``, ``hashing`` or ``huggingface``."""
    if name == "hashing":
        return HashingEmbedder()
    if name == "local":
        from semanticcache.embedders.local import LocalEmbedder

        return LocalEmbedder()
    if name == "huggingface":
        from semanticcache.embedders.huggingface import HuggingFaceEmbedder

        return HuggingFaceEmbedder()
    raise SystemExit(f"unknown embedder {name!r}: local, hashing or huggingface")


async def run(
    pg_uri: str, embedder_names: Iterable[str], pairs: Sequence[Pair], concurrency: int = 32
) -> list[Result]:
    """Score ``pairs`` with each embedder, then add a stage-2 row set for each."""
    results: list[Result] = []
    for name in embedder_names:
        embedder = build_embedder(name)
        started = time.perf_counter()
        try:
            async with SemanticCache(
                pg_uri=pg_uri, embedder=embedder, threshold=NEAR_ZERO, pool_max_size=8
            ) as cache:
                scores = await score_pairs(cache, pairs, pg_uri=pg_uri, concurrency=concurrency)
        finally:
            await embedder.aclose()
        seconds = time.perf_counter() - started
        results.append(evaluate(name, scores, pairs, seconds))
        results.append(evaluate(f"{name} + stage 2", scores, pairs, seconds, stage2_agrees))
    return results


def markdown(results: Sequence[Result], data: str) -> str:
    """The results as Markdown tables."""
    lines = [
        f"Data: `{data}`, {results[0].pairs} pairs "
        f"({sum(1 for _ in results[0].scores)} lookups per embedder).",
        "",
        "| Embedder | ROC-AUC | Threshold for false hits <= 1 % | Hit rate there | "
        "Precision there | Run time |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.at_max_fhr
        lines.append(
            f"| {r.name} | {r.auc:.3f} | {m.threshold:.3f} | {100 * m.hit_rate:.1f} % | "
            f"{100 * m.precision:.1f} % | "
            f"{f'{r.seconds:.0f} s' if math.isfinite(r.seconds) else 'n/a'} |"
        )
    for r in results:
        lines += [
            "",
            f"**{r.name}**: hit rate on same-answer pairs / false-hit rate on the others / "
            "precision of hits",
            "",
            "| Threshold | Hit rate | False-hit rate | Precision |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row.threshold:.2f} | {100 * row.hit_rate:.1f} % | "
            f"{100 * row.false_hit_rate:.2f} % | {100 * row.precision:.1f} % |"
            for row in r.rows
        ]
    return "\n".join(lines) + "\n"


def plot(results: Sequence[Result], path: Path) -> None:
    """Hit rate and false-hit rate against the threshold, one colour per embedder."""
    plot_rates([(r.name, r.rows) for r in results], path, max_rate=MAX_FALSE_HIT_RATE)


def _as_json(results: Sequence[Result]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "pairs": r.pairs,
            "roc_auc": r.auc,
            "at_max_false_hit_rate": vars_of(r.at_max_fhr),
            "rows": [vars_of(row) for row in r.rows],
            "seconds": r.seconds,
        }
        for r in results
    ]


def vars_of(row: Row) -> dict[str, float]:
    """A row as a dict."""
    return {
        "threshold": row.threshold,
        "hit_rate": row.hit_rate,
        "false_hit_rate": row.false_hit_rate,
        "precision": row.precision,
    }


def from_scores(path: Path, pairs: Sequence[Pair]) -> list[Result]:
    """Results for the similarities of a ``--scores`` file (no run time: ``nan``)."""
    by_embedder: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_embedder.setdefault(row["embedder"], {})[row["id"]] = float(row["score"])
    results: list[Result] = []
    for name, scores in by_embedder.items():
        ordered = [scores[p.id] for p in pairs]
        results.append(evaluate(name, ordered, pairs, math.nan))
        results.append(evaluate(f"{name} + stage 2", ordered, pairs, math.nan, stage2_agrees))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--embedders", default="local,hashing")
    parser.add_argument("--pg-uri", default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument(
        "--scores", type=Path, default=None, help="write every pair's similarity (JSONL)"
    )
    parser.add_argument(
        "--from-scores",
        type=Path,
        default=None,
        help="evaluate the similarities a --scores file holds instead of running the cache",
    )
    args = parser.parse_args(argv)
    pairs = load_pairs(args.data, args.limit)
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    if args.from_scores:
        results = from_scores(args.from_scores, pairs)
        names = [r.name for r in results if "+" not in r.name]
    elif args.pg_uri:
        results = asyncio.run(run(args.pg_uri, names, pairs, args.concurrency))
    else:
        from semanticcache.storage.embedded import EmbeddedPostgres

        with tempfile.TemporaryDirectory(prefix="semcache-quality-") as folder:
            server = EmbeddedPostgres(Path(folder) / "data")
            server.start()
            try:
                uri = server.create_database(f"quality_{secrets.token_hex(4)}")
                results = asyncio.run(run(uri, names, pairs, args.concurrency))
            finally:
                server.stop()
    text = markdown(results, str(args.data))
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(_as_json(results), indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    if args.scores:
        with args.scores.open("w") as f:
            for r in results:
                if r.name in names:  # the plain rows; stage 2 reuses the same scores
                    for pair, score in zip(pairs, r.scores, strict=True):
                        f.write(json.dumps({"embedder": r.name, "id": pair.id, "score": score}))
                        f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
