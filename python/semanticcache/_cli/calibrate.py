"""``semcache calibrate``: the threshold that keeps false hits under a target, from
labelled pairs run through the real cache and Postgres."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, get_args

from semanticcache._cli._common import (
    ProgressBar,
    UsageError,
    add_postgres_arguments,
    load_settings,
    postgres,
)
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._embedders.factory import get_embedder, missing_extra_error
from semanticcache._settings import CacheSettings, EmbedderType
from semanticcache.calibration import (
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

__all__ = ["add_parser", "run"]

_EMBEDDERS: Final[tuple[str, ...]] = get_args(EmbedderType)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--target-fhr must be in [0, 1), not {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Register ``semcache calibrate``."""
    parser = commands.add_parser(
        "calibrate",
        help="the threshold for a target false-hit rate, from labelled pairs",
        description="Store each pair's a and look up its b through the real SemanticCache "
        "and Postgres (in a scope of this run, removed after), then print the lowest "
        "threshold whose false-hit rate on same_answer=false pairs is at most "
        "--target-fhr, with the hit rate, precision and ROC-AUC there.",
    )
    parser.add_argument(
        "--pairs",
        type=Path,
        required=True,
        metavar="FILE",
        help='JSONL, one {"a": ..., "b": ..., "same_answer": true|false} per line',
    )
    parser.add_argument(
        "--target-fhr",
        type=_rate,
        default=0.01,
        metavar="RATE",
        help="highest acceptable false-hit rate, as a fraction (default 0.01)",
    )
    parser.add_argument(
        "--embedder",
        choices=_EMBEDDERS,
        default=None,
        help="embedder to calibrate (default: $SEMANTIC_CACHE_EMBEDDER_TYPE, else local)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="write the rates curve here"
    )
    add_postgres_arguments(parser)
    parser.set_defaults(run=run)


def _check_plot(path: Path | None) -> None:
    if path is None:
        return
    try:
        import matplotlib  # noqa: F401  (checked before the long run, not after it)
    except ImportError:
        raise missing_extra_error("matplotlib", "plot", "semcache calibrate --plot") from None
    if not path.parent.is_dir():
        raise UsageError(f"--plot: the folder {path.parent} does not exist")


async def _score(
    settings: CacheSettings,
    uri: str,
    embedder: BaseEmbedder,
    pairs: Sequence[Pair],
    bar: ProgressBar,
) -> tuple[list[tuple[float, bool]], str]:
    from semanticcache._cache import SemanticCache

    scope = f"calibrate-{secrets.token_hex(4)}"
    try:
        async with SemanticCache(
            settings=settings, pg_uri=uri, embedder=embedder, threshold=NEAR_ZERO
        ) as cache:
            try:
                scores = await score_pairs(
                    cache, pairs, pg_uri=uri, concurrency=16, scope=scope, progress=bar.update
                )
            finally:
                await cache.purge(scope=scope)
            return scores, cache.table
    finally:
        await embedder.aclose()


def _report(
    name: str,
    table: str,
    pairs: Sequence[Pair],
    scored: Sequence[tuple[float, bool]],
    target: float,
    agreement_check: bool,
) -> tuple[list[str], Row, list[Row]]:
    labels = [p.same_answer for p in pairs]
    scores = [s for s, _ in scored]
    # The agreement check's verdict: a refused candidate is never served, whatever its
    # similarity (a miss, ranked below every served pair for the ROC curve).
    keep = [k for _, k in scored]
    best = threshold_for_false_hit_rate(scores, labels, keep, max_rate=target)
    auc = roc_auc([s if k else MISS for s, k in scored], labels)
    positives = sum(labels)
    check = "on" if agreement_check else "off (SEMANTIC_CACHE_AGREEMENT_CHECK=false)"
    lines = [
        f"pairs: {len(pairs)} ({positives} same answer, {len(pairs) - positives} different); "
        f"embedder {name}, table {table}, agreement check {check}",
        f"ROC-AUC: {auc:.3f}" if math.isfinite(auc) else "ROC-AUC: n/a (needs both labels)",
        f"threshold for false hits <= {100 * target:g} %: {best.threshold:.3f}",
        f"  hit rate there:   {100 * best.hit_rate:.1f} % of same-answer pairs",
        f"  false-hit rate:   {100 * best.false_hit_rate:.2f} % of different-answer pairs",
        f"  precision:        {100 * best.precision:.1f} % of hits",
        "",
        f"SEMANTIC_CACHE_THRESHOLD={best.threshold:.3f}",
    ]
    curve = sorted(
        [*(rates(scores, labels, t, keep) for t in THRESHOLDS), best],
        key=lambda row: row.threshold,
    )
    return lines, best, curve


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache calibrate``."""
    _check_plot(args.plot)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    try:
        pairs = load_pairs(args.pairs, args.limit)
    except FileNotFoundError:
        raise UsageError(f"--pairs: no such file: {args.pairs}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--pairs: {args.pairs} is not UTF-8 text") from None
    if not pairs:
        raise UsageError(f"--pairs: {args.pairs} holds no pairs")
    settings = load_settings(args, environ)
    if args.embedder is not None:
        settings = dataclasses.replace(settings, embedder_type=args.embedder)
    # The scoring cache reports every similarity: no stage-2 cutoff, no TTL, no Redis.
    settings = dataclasses.replace(
        settings, rejection_threshold=None, pg_ttl_days=None, redis_uri=None
    )
    embedder_name = settings.embedder_type
    # Built before Postgres starts: a missing extra or API key stops the command first.
    embedder = get_embedder(settings)
    scoring = False
    try:
        with postgres(args, settings, environ, sys.stdout) as pg:
            bar = ProgressBar(f"scoring {len(pairs)} pairs", sys.stderr)
            scoring = True  # _score closes the embedder
            scored, table = asyncio.run(_score(settings, pg.uri, embedder, pairs, bar))
            lines, best, curve = _report(
                embedder_name, table, pairs, scored, args.target_fhr, settings.agreement_check
            )
            print("\n".join(lines), flush=True)
    finally:
        if not scoring:
            asyncio.run(embedder.aclose())
    if args.plot is not None:
        plot_rates(
            [(embedder_name, curve)],
            args.plot,
            max_rate=args.target_fhr,
            chosen=best.threshold,
        )
        print(f"plot: {args.plot}")
    return 0
