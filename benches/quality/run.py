"""Answer-quality benchmark: labelled question pairs through the real ``SemanticCache``.

For each pair (``a``, ``b``, ``same_answer``) of a JSONL file, ``a`` is stored in a cache
partition of its own (an empty cache as far as ``b`` can see) and ``b`` is looked up
there, through ``SemanticCache.put`` / ``get`` on Postgres + pgvector. The cache runs with
a threshold near zero, so every lookup reports the similarity pgvector computed; a hit at
threshold ``t`` is then ``similarity >= t``, exactly the cache's own rule. Reported per
embedder: ROC-AUC, and for each threshold the hit rate on ``same_answer`` pairs, the
false-hit rate on the others and the precision of hits; plus the lowest threshold whose
false-hit rate is at most 1 %.

The cache runs with the verifier off (``benches/quality/verifier.py`` measures its
decision) and its agreement check on (the default): a lookup whose candidate disagrees
with it (numbers, negation, names, opposites: :mod:`semanticcache._agreement`) ends with
reason ``disagreement`` and still reports the similarity. Each embedder gets two
row sets: the plain similarity, and the product's behaviour (a refused candidate is a
miss). The summary also gives a split-half figure: the 1 % threshold chosen on the even
pairs (0, 2, 4...), applied to the odd ones. ``--from-scores`` re-evaluates a saved run
(``--scores``) without embedding again.

    python -m benches.quality.run --embedders local,hashing \\
        [--data ../shared/evaldata/qqp_gptcache/dev.jsonl] [--limit N] \\
        [--pg-uri postgresql://...] [--json out.json] [--markdown out.md] [--plot out.png]

Without ``--pg-uri`` an embedded Postgres is started in a temporary folder and stopped
after. The data (non-commercial terms, so not in this repository) is read from the
project's shared folder beside the checkout, or from ``--data`` /
``SEMCACHE_QUALITY_DATA``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semanticcache import BaseEmbedder, HashingEmbedder, SemanticCache
from semanticcache._agreement import texts_agree
from semanticcache._settings_process import get_cache_settings
from semanticcache.calibration import (
    MAX_FALSE_HIT_RATE,
    MISS,
    NEAR_ZERO,
    THRESHOLDS,
    Pair,
    Row,
    load_pairs,
    rates,
    roc_auc,
    score_pairs,
    threshold_for_false_hit_rate,
)

DATA_ENV = "SEMCACHE_QUALITY_DATA"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata"
DEFAULT_DATA = Path(os.environ.get(DATA_ENV) or SHARED_DATA / "qqp_gptcache" / "dev.jsonl")


def missing_data_message(path: Path) -> str:
    """Where to get the labelled pairs, for a run or a test that finds ``path`` absent."""
    return (
        f"answer-quality data not found at {path}: it is qqp_gptcache/dev.jsonl (40,797 "
        "labelled Quora question pairs from GPTCache's benchmark file; non-commercial "
        "terms, so not in this repository), read from the project's shared folder "
        "../shared/evaldata/ beside the checkout; point --data or "
        f"{DATA_ENV} at a copy (docs/BENCHMARKS.md, 'Answer quality')"
    )


# --- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """One embedder's outcome (plain similarity, or with the agreement check)."""

    name: str
    pairs: int
    auc: float
    rows: list[Row]
    at_max_fhr: Row
    seconds: float
    split_even: Row
    """The 1 % threshold chosen on the even pairs, and the even pairs' figures there."""
    split_odd: Row
    """The odd pairs' figures at the threshold chosen on the even ones."""
    scores: list[float] = field(repr=False, default_factory=list)
    agrees: list[bool] = field(repr=False, default_factory=list)
    labels: list[bool] = field(repr=False, default_factory=list)


def evaluate(
    name: str,
    scores: Sequence[float],
    pairs: Sequence[Pair],
    seconds: float,
    agrees: Sequence[bool] | None = None,
) -> Result:
    """Metrics for ``scores`` (with ``agrees``: only the pairs it marks true can hit)."""
    labels = [p.same_answer for p in pairs]
    keep = [True] * len(pairs) if agrees is None else list(agrees)
    # A refused hit is a miss: for the ROC curve it ranks below every served one.
    effective = [s if k else MISS for s, k in zip(scores, keep, strict=True)]
    even = threshold_for_false_hit_rate(scores[0::2], labels[0::2], keep[0::2])
    return Result(
        name=name,
        pairs=len(pairs),
        auc=roc_auc(effective, labels),
        rows=[rates(scores, labels, t, keep) for t in THRESHOLDS],
        at_max_fhr=threshold_for_false_hit_rate(scores, labels, keep),
        seconds=seconds,
        split_even=even,
        split_odd=rates(scores[1::2], labels[1::2], even.threshold, keep[1::2]),
        scores=list(scores),
        agrees=keep,
        labels=labels,
    )


def both(
    name: str, scored: Sequence[tuple[float, bool]], pairs: Sequence[Pair], seconds: float
) -> list[Result]:
    """The plain row set and the agreement-check row set of one embedder's run."""
    scores = [s for s, _ in scored]
    agrees = [a for _, a in scored]
    return [
        evaluate(name, scores, pairs, seconds),
        evaluate(f"{name} + agreement check", scores, pairs, seconds, agrees),
    ]


def build_embedder(name: str) -> BaseEmbedder:
    """An embedder by short name: ``local``, ``hashing`` or ``huggingface``."""
    if name == "hashing":
        return HashingEmbedder()
    if name == "local":
        from semanticcache._embedders.local import LocalEmbedder

        return LocalEmbedder()
    if name == "huggingface":
        from semanticcache._embedders.huggingface import HuggingFaceEmbedder

        return HuggingFaceEmbedder()
    raise SystemExit(f"unknown embedder {name!r}: local, hashing or huggingface")


async def run(
    pg_uri: str, embedder_names: Iterable[str], pairs: Sequence[Pair], concurrency: int = 32
) -> list[Result]:
    """Score ``pairs`` with each embedder: a plain and an agreement-check row set each."""
    results: list[Result] = []
    for name in embedder_names:
        embedder = build_embedder(name)
        started = time.perf_counter()
        try:
            # The similarity alone, as the cache decides with the verifier off (with it on,
            # lookups end `unverified`: benches/quality/verifier.py measures it).
            async with SemanticCache(
                settings=dataclasses.replace(get_cache_settings(), verifier="off"),
                pg_uri=pg_uri,
                embedder=embedder,
                threshold=NEAR_ZERO,
                pool_max_size=8,
            ) as cache:
                scored = await score_pairs(cache, pairs, pg_uri=pg_uri, concurrency=concurrency)
        finally:
            await embedder.aclose()
        results += both(name, scored, pairs, time.perf_counter() - started)
    return results


def markdown(results: Sequence[Result], data: str) -> str:
    """The results as Markdown tables."""
    lines = [
        f"Data: `{data}`, {results[0].pairs} pairs "
        f"({sum(1 for _ in results[0].scores)} lookups per embedder).",
        "",
        "| Embedder | ROC-AUC | Threshold for false hits <= 1 % | Hit rate there | "
        "Precision there | Split half: threshold (even) | Odd: hit rate | Odd: false hits "
        "| Run time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.at_max_fhr
        lines.append(
            f"| {r.name} | {r.auc:.3f} | {m.threshold:.3f} | {100 * m.hit_rate:.1f} % | "
            f"{100 * m.precision:.1f} % | {r.split_even.threshold:.3f} | "
            f"{100 * r.split_odd.hit_rate:.1f} % | {100 * r.split_odd.false_hit_rate:.2f} % | "
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
    """Left: hit and false-hit rates against the threshold, one colour per row set.
    Right: hit rate against false-hit rate (the trade-off the threshold moves along),
    up to a 5 % false-hit rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    fine = [round(0.80 + 0.002 * i, 3) for i in range(101)]  # 0.80 .. 1.00
    for index, r in enumerate(results):
        colour = f"C{index}"
        xs = [row.threshold for row in r.rows]
        left.plot(xs, [100 * row.hit_rate for row in r.rows], color=colour, label=f"{r.name}: hits")
        left.plot(
            xs,
            [100 * row.false_hit_rate for row in r.rows],
            color=colour,
            linestyle="--",
            label=f"{r.name}: false hits",
        )
        curve = [rates(r.scores, r.labels, t, r.agrees) for t in fine]
        right.plot(
            [100 * row.false_hit_rate for row in curve],
            [100 * row.hit_rate for row in curve],
            color=colour,
            label=r.name,
        )
    left.axhline(100 * MAX_FALSE_HIT_RATE, color="grey", linewidth=0.8)
    left.set_xlabel("similarity threshold")
    left.set_ylabel("% of same-answer pairs hit (solid) / other pairs hit (dashed)")
    left.set_yscale("log")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.axvline(100 * MAX_FALSE_HIT_RATE, color="grey", linewidth=0.8)
    right.set_xlim(0, 5)
    right.set_ylim(0, 40)
    right.set_xlabel("% of other pairs hit (false-hit rate)")
    right.set_ylabel("% of same-answer pairs hit")
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _as_json(results: Sequence[Result]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "pairs": r.pairs,
            "roc_auc": r.auc,
            "at_max_false_hit_rate": vars_of(r.at_max_fhr),
            "split_half_even": vars_of(r.split_even),
            "split_half_odd_at_even_threshold": vars_of(r.split_odd),
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
    """Results for the similarities of a ``--scores`` file (no run time: ``nan``).

    A file without the ``agrees`` field (older runs) gets the verdict of today's
    :func:`~semanticcache._agreement.texts_agree`, as the cache would give it.
    """
    by_embedder: dict[str, dict[str, tuple[float, bool | None]]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            verdict = row.get("agrees")
            by_embedder.setdefault(row["embedder"], {})[row["id"]] = (
                float(row["score"]),
                None if verdict is None else bool(verdict),
            )
    results: list[Result] = []
    for name, scores in by_embedder.items():
        scored = []
        for p in pairs:
            score, verdict = scores[p.id]
            scored.append((score, texts_agree(p.b, p.a) if verdict is None else verdict))
        results += both(name, scored, pairs, math.nan)
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
    if not args.data.is_file():
        sys.stderr.write(f"error: {missing_data_message(args.data)}\n")
        return 2
    pairs = load_pairs(args.data, args.limit)
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    if args.from_scores:
        results = from_scores(args.from_scores, pairs)
        names = [r.name for r in results if "+" not in r.name]
    elif args.pg_uri:
        results = asyncio.run(run(args.pg_uri, names, pairs, args.concurrency))
    else:
        from semanticcache._devserver import EmbeddedPostgres

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
    if args.scores:
        with args.scores.open("w") as f:
            for r in results:
                if r.name in names:  # the plain rows; the other set has the same scores
                    verdicts = next(x.agrees for x in results if x.name.startswith(r.name + " +"))
                    for pair, score, agrees in zip(pairs, r.scores, verdicts, strict=True):
                        row = {"embedder": r.name, "id": pair.id, "score": score, "agrees": agrees}
                        f.write(json.dumps(row) + "\n")
    # Last: the plot needs matplotlib (not a dependency), and the run is long to repeat.
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError as exc:
            sys.stderr.write(f"no plot written ({exc}): pip install matplotlib\n")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
