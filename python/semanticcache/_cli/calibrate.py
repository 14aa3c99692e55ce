"""``semcache calibrate``: the threshold that keeps false hits under a target, from
labelled pairs run through the real cache and Postgres; with the verifier on, also its
probability threshold, from :func:`~semanticcache.calibration.judge_pairs`."""

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
from semanticcache._storage.tables import table_name_for
from semanticcache._verifier import Verifier, load_verifier
from semanticcache.calibration import (
    MISS,
    NEAR_ZERO,
    THRESHOLDS,
    Judgement,
    Pair,
    Row,
    judge_pairs,
    load_pairs,
    plot_rates,
    rates,
    roc_auc,
    score_pairs,
    threshold_for_false_hit_rate,
)

__all__ = ["add_parser", "kept_negatives", "run"]

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
        "--target-fhr, with the hit rate, precision and ROC-AUC there. With the verifier on, "
        "also judge the pairs as a lookup would and print the lowest verifier probability "
        "threshold that keeps false hits at most --target-fhr "
        "(SEMANTIC_CACHE_VERIFIER_THRESHOLD), beside the similarity-only figures.",
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
        "--negatives",
        action="store_true",
        help="also the hits reported wrong with their lookup text (semcache_negatives, "
        "this embedder's table), as same_answer=false pairs",
    )
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


# The verifier's thresholds are printed to this many decimals (probabilities crowd near 1).
_PROBABILITY_DECIMALS: Final = 4
# judge_pairs runs in chunks of this many pairs, so that the progress bar moves.
_JUDGE_CHUNK: Final = 256
# A placeholder while calibrating: the verifier's probabilities do not depend on it.
_PROVISIONAL_THRESHOLD: Final = 0.5


async def _score(
    settings: CacheSettings,
    uri: str,
    embedder: BaseEmbedder,
    pairs: Sequence[Pair],
    bar: ProgressBar,
) -> tuple[list[tuple[float, bool]], str]:
    from semanticcache._cache import SemanticCache

    scope = f"calibrate-{secrets.token_hex(4)}"
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


async def _judge(
    settings: CacheSettings, embedder: BaseEmbedder, pairs: Sequence[Pair], bar: ProgressBar
) -> list[Judgement]:
    judged: list[Judgement] = []
    for start in range(0, len(pairs), _JUDGE_CHUNK):
        chunk = [(p.a, p.b) for p in pairs[start : start + _JUDGE_CHUNK]]
        judged += await judge_pairs(chunk, settings=settings, embedder=embedder)
        bar.update(len(judged), len(pairs))
    return judged


async def _measure(
    scoring: CacheSettings,
    judging: CacheSettings | None,
    uri: str,
    embedder: BaseEmbedder,
    pairs: Sequence[Pair],
) -> tuple[list[tuple[float, bool]], str, list[Judgement] | None]:
    """The similarity scores through the cache, then (with ``judging``) the verifier's
    judgements; closes ``embedder``."""
    try:
        bar = ProgressBar(f"scoring {len(pairs)} pairs", sys.stderr)
        scored, table = await _score(scoring, uri, embedder, pairs, bar)
        judged = None
        if judging is not None:
            bar = ProgressBar(f"verifying {len(pairs)} pairs", sys.stderr)
            judged = await _judge(judging, embedder, pairs, bar)
        return scored, table, judged
    finally:
        await embedder.aclose()


def _allowed_false_hits(negatives: int, target: float) -> int:
    """The most different-answer pairs that may be served: ``k / negatives <= target``
    (the comparison :func:`rates` makes, free of the product's rounding)."""
    allowed = math.floor(target * negatives)
    while allowed + 1 <= negatives and (allowed + 1) / negatives <= target:
        allowed += 1
    while allowed > 0 and allowed / negatives > target:
        allowed -= 1
    return allowed


def verifier_threshold(
    probabilities: Sequence[float | None], labels: Sequence[bool], target: float
) -> float | None:
    """The lowest probability threshold (to ``_PROBABILITY_DECIMALS`` places, above 0 as
    the setting requires) at which at most ``target`` of the different-answer pairs are
    served, a pair being served when it has a probability (it reached the verifier) at
    or above the threshold. ``None`` when none is (a different-answer pair at 1.0)."""
    step = 10**-_PROBABILITY_DECIMALS
    negatives = sorted(
        (p for p, y in zip(probabilities, labels, strict=True) if not y and p is not None),
        reverse=True,
    )
    allowed = _allowed_false_hits(len(labels) - sum(labels), target)
    if allowed >= len(negatives):
        return step
    # Every negative at or above the (allowed + 1)-th highest one must be refused: the
    # threshold is the first printed value strictly above it.
    refused = negatives[allowed]
    grid = math.ceil(refused / step)
    while float(f"{grid * step:.{_PROBABILITY_DECIMALS}f}") <= refused:
        grid += 1
    threshold = float(f"{max(grid, 1) * step:.{_PROBABILITY_DECIMALS}f}")
    return threshold if threshold <= 1.0 else None


def _verifier_rows(
    pairs: Sequence[Pair], judged: Sequence[Judgement], target: float
) -> tuple[Row | None, float]:
    """The verifier's figures at its threshold for ``target`` (``None`` when there is no
    such threshold), and the ROC-AUC of its probability."""
    labels = [p.same_answer for p in pairs]
    probabilities = [j.probability for j in judged]
    # A pair that never reached the verifier is never served: it ranks below every other.
    scores = [MISS if p is None else p for p in probabilities]
    reached = [p is not None for p in probabilities]
    auc = roc_auc(scores, labels)
    threshold = verifier_threshold(probabilities, labels, target)
    if threshold is None:
        return None, auc
    return rates(scores, labels, threshold, reached), auc


def _report(
    name: str,
    table: str,
    pairs: Sequence[Pair],
    scored: Sequence[tuple[float, bool]],
    target: float,
    agreement_check: bool,
) -> tuple[list[str], Row, list[Row], float]:
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
    ]
    curve = sorted(
        [*(rates(scores, labels, t, keep) for t in THRESHOLDS), best],
        key=lambda row: row.threshold,
    )
    return lines, best, curve, auc


def _similarity_only(best: Row, auc: float, target: float) -> list[str]:
    return [
        _auc_line(auc),
        f"threshold for false hits <= {100 * target:g} %: {best.threshold:.3f}",
        f"  hit rate there:   {100 * best.hit_rate:.1f} % of same-answer pairs",
        f"  false-hit rate:   {100 * best.false_hit_rate:.2f} % of different-answer pairs",
        f"  precision:        {100 * best.precision:.1f} % of hits",
        "",
        f"SEMANTIC_CACHE_THRESHOLD={best.threshold:.3f}",
    ]


def _auc_line(auc: float, what: str = "") -> str:
    if not math.isfinite(auc):
        return f"ROC-AUC{what}: n/a (needs both labels)"
    return f"ROC-AUC{what}: {auc:.3f}"


def _beside(
    best: Row,
    auc: float,
    verifier: Verifier,
    judged: Sequence[Judgement],
    pairs: Sequence[Pair],
    target: float,
) -> list[str]:
    """The similarity-only figures beside the verifier's, and the line to set."""
    row, verifier_auc = _verifier_rows(pairs, judged, target)
    reached = sum(1 for j in judged if j.probability is not None)
    lines = [
        f"verifier {verifier.name}: {reached} of {len(pairs)} pairs reach it (similarity "
        f">= its floor {verifier.floor:g}, texts that agree)",
        f"{_auc_line(auc, ' of the similarity')}; {_auc_line(verifier_auc, ' of the verifier')}",
        "",
    ]

    def cells(label: str, left: str, right: str, unit: str) -> str:
        return f"{label:<24}{left:>17}{right:>19}  {unit}".rstrip()

    lines.append(cells(f"for false hits <= {100 * target:g} %:", "similarity only", "verifier", ""))

    def percent(value: float, decimals: int) -> str:
        return f"{100 * value:.{decimals}f} %"

    # Not at the start of a line: `grep ^SEMANTIC_CACHE_` finds only the line to set.
    off = (
        f"(with SEMANTIC_CACHE_VERIFIER=off instead: SEMANTIC_CACHE_THRESHOLD={best.threshold:.3f})"
    )
    if row is None:
        return [
            *lines,
            cells("  threshold", f"{best.threshold:.3f}", "none", ""),
            "",
            f"no verifier threshold keeps false hits <= {100 * target:g} %: a different-"
            "answer pair has probability 1.0",
            off,
        ]
    return [
        *lines,
        cells(
            "  threshold",
            f"{best.threshold:.3f}",
            f"{row.threshold:.{_PROBABILITY_DECIMALS}f}",
            "(a similarity / a probability)",
        ),
        cells(
            "  hit rate",
            percent(best.hit_rate, 1),
            percent(row.hit_rate, 1),
            "of same-answer pairs",
        ),
        cells(
            "  false-hit rate",
            percent(best.false_hit_rate, 2),
            percent(row.false_hit_rate, 2),
            "of different-answer pairs",
        ),
        cells("  precision", percent(best.precision, 1), percent(row.precision, 1), "of hits"),
        "",
        f"SEMANTIC_CACHE_VERIFIER_THRESHOLD={row.threshold:.{_PROBABILITY_DECIMALS}f}",
        off,
    ]


def kept_negatives(uri: str, table: str) -> list[Pair]:
    """The negatives kept for ``table`` that carry the lookup text answered wrongly, as
    different-answer pairs (stored text, lookup text)."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('semcache_negatives')").fetchone()
        if found is None or found[0] is None:
            return []
        rows = conn.execute(
            "SELECT id, stored_text, lookup_text FROM semcache_negatives "
            "WHERE cache_table = %s AND lookup_text IS NOT NULL ORDER BY id",
            (table,),
        ).fetchall()
    return [
        Pair(f"negative-{row[0]}", str(row[1]), str(row[2]), False)
        for row in rows
        if str(row[1]).strip() and str(row[2]).strip()
    ]


def _judging_settings(settings: CacheSettings) -> CacheSettings:
    """The settings ``judge_pairs`` runs with: the configured ones, with a placeholder
    verifier threshold when none is set (a named model needs one to load, and the table's
    may not cover ``max_false_hit_rate``)."""
    if settings.verifier_threshold is not None:
        return settings
    return dataclasses.replace(settings, verifier_threshold=_PROVISIONAL_THRESHOLD)


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
    # The scoring cache reports every similarity: no stage-2 cutoff, no verifier (its
    # lookups would end `unverified`), no TTL, no Redis.
    scoring = dataclasses.replace(
        settings, rejection_threshold=None, verifier="off", pg_ttl_days=None, redis_uri=None
    )
    embedder_name = settings.embedder_type
    # Built before Postgres starts: a missing extra, API key or model stops the command first.
    embedder = get_embedder(settings)
    measuring = False
    try:
        judging = _judging_settings(settings)
        verifier = load_verifier(judging, embedder)
        with postgres(args, settings, environ, sys.stdout) as pg:
            if args.negatives:
                table = table_name_for(embedder.model_id, embedder.dimension)
                kept = kept_negatives(pg.uri, table)
                print(f"negatives: {len(kept)} reported wrong (with their lookup text)")
                pairs = [*pairs, *kept]
            measuring = True  # _measure closes the embedder
            scored, table, judged = asyncio.run(
                _measure(scoring, None if verifier is None else judging, pg.uri, embedder, pairs)
            )
            lines, best, curve, auc = _report(
                embedder_name, table, pairs, scored, args.target_fhr, settings.agreement_check
            )
            if verifier is None or judged is None:
                lines += _similarity_only(best, auc, args.target_fhr)
            else:
                lines += _beside(best, auc, verifier, judged, pairs, args.target_fhr)
            print("\n".join(lines), flush=True)
    finally:
        if not measuring:
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
