"""Answer quality with the verifier, on the held-out test split, judged as a lookup would.

The pairs are those ``training/verifier/split.py`` and ``rules.py`` put in their test
split (QQP and PAWS by connected component, the rule pairs by frame): never trained on,
never used to choose a threshold. Every pair is judged by
:func:`semanticcache.calibration.judge_pairs`, the lookup's own decision with the local
embedder, twice:

- **verifier**: the cache's default (``SEMANTIC_CACHE_VERIFIER=auto``, the packaged
  model), at the thresholds its card gives for each ``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE``
  (chosen on the calibrate split; a pair sharing most of its words takes the stricter);
- **similarity only**: ``SEMANTIC_CACHE_VERIFIER=off`` with the agreement check (today's
  decision), at the lowest similarity threshold that served at most that share of the
  calibrate split's different-answer pairs, QQP, PAWS and the paraphrase pairs each (as
  the card's were).

Quora's labels are read through the audit in ``training/verifier/audit/`` (the "different"
pairs that score highest, read one by one: those that want the same answer count as
same-answer pairs); its raw labels are reported too. The generated paraphrase pairs
(``training/verifier/paraphrases.py``, whole items held out) are judged beside them.

Reported per rate: QQP recall (same-answer pairs served) and false-hit rate, with audited
and raw labels, PAWS and rule pairs' false-hit rates, paraphrase recall and false hits.
The verifier's probability does not depend on its threshold, so
one run gives its decision at every rate: a pair is served when it got a probability (it
passed the floor and the agreement check) at or above the threshold its pair takes.

    python -m benches.quality.verifier --split /work/train-out \\
        [--data QQP.jsonl] [--paws PAWS.jsonl] [--limit N] [--json out.json] [--markdown out.md]

``--split`` is the folder ``training.verifier.split`` and ``training.verifier.rules``
wrote (``split/*.ids``, ``rules/*.jsonl``; its ``split`` subfolder is accepted too). The
QQP and PAWS files are read from the project's shared folder beside the checkout, or from
``--data`` / ``--paws``; QQP's terms are non-commercial, so none of it is in this
repository.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from training.verifier.paraphrases import paraphrase_pairs

from benches.quality.run import DEFAULT_DATA, SHARED_DATA, missing_data_message
from semanticcache._embedders.base import BaseEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier import load_verifier
from semanticcache._verifier.card import Thresholds
from semanticcache.calibration import NEAR_ZERO, Judgement, Pair, judge_pairs, load_pairs

RATES: Final = (0.005, 0.01, 0.02)
"""The ``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE`` values reported."""
DATASETS: Final = ("qqp", "paws", "rules", "paraphrases")
AUDIT: Final = Path(__file__).resolve().parents[2] / "training" / "verifier" / "audit"
SPLIT_ENV: Final = "SEMCACHE_QUALITY_SPLIT"
PAWS_ENV: Final = "SEMCACHE_QUALITY_PAWS"
DEFAULT_SPLIT: Final = Path(os.environ.get(SPLIT_ENV) or "/work/train-out")
DEFAULT_PAWS: Final = Path(os.environ.get(PAWS_ENV) or SHARED_DATA / "paws_wiki" / "dev.jsonl")
# Pairs judged per judge_pairs call: bounds the embeddings held at once, shows progress.
CHUNK: Final = 1000
# A placeholder while judging: the probabilities do not depend on it.
_PROVISIONAL_THRESHOLD: Final = 0.5


def split_root(folder: Path) -> Path:
    """The folder holding ``split/`` and ``rules/`` (``folder`` or its parent)."""
    if (folder / "qqp.test.ids").is_file():
        return folder.parent
    return folder


def split_files(folder: Path) -> dict[str, Path]:
    """The files of the split: ``<dataset>.<split>`` -> path, for calibrate and test."""
    root = split_root(folder)
    files: dict[str, Path] = {}
    for split in ("calibrate", "test"):
        for dataset in ("qqp", "paws"):
            files[f"{dataset}.{split}"] = root / "split" / f"{dataset}.{split}.ids"
        files[f"rules.{split}"] = root / "rules" / f"{split}.jsonl"
    return files


def missing_split_message(folder: Path) -> str:
    """Where the split comes from, for a run or a test that finds it absent."""
    missing = [str(p) for p in split_files(folder).values() if not p.is_file()]
    return (
        f"the verifier's data split is not in {folder} (missing: {', '.join(missing)}). "
        "It is made from the QQP and PAWS files (docs/BENCHMARKS.md, 'Answer quality', says "
        "where to get them) by `python -m training.verifier.split --qqp QQP.jsonl --paws "
        "PAWS.jsonl --out DIR` and `python -m training.verifier.rules --out DIR` "
        "(training/verifier/README.md); point --split or "
        f"{SPLIT_ENV} at DIR"
    )


def missing_inputs(data: Path, paws: Path, split: Path) -> list[str]:
    """What a run needs and does not find, as messages (empty: all there)."""
    problems = []
    if not data.is_file():
        problems.append(missing_data_message(data))
    if not paws.is_file():
        problems.append(
            f"PAWS-Wiki data not found at {paws}: paws_wiki/dev.jsonl (8,000 labelled word-"
            "order pairs), read from the project's shared folder ../shared/evaldata/ beside "
            f"the checkout; point --paws or {PAWS_ENV} at a copy"
        )
    if not all(p.is_file() for p in split_files(split).values()):
        problems.append(missing_split_message(split))
    return problems


def load_splits(
    data: Path, paws: Path, split: Path, limit: int | None = None
) -> dict[str, dict[str, list[Pair]]]:
    """``dataset -> split -> pairs`` (the first ``limit`` of each), in the ids' order."""
    files = split_files(split)
    everything = {"qqp": load_pairs(data), "paws": load_pairs(paws)}
    generated = paraphrase_pairs()
    result: dict[str, dict[str, list[Pair]]] = {}
    for dataset in DATASETS:
        result[dataset] = {}
        for part in ("calibrate", "test"):
            if dataset == "paraphrases":
                pairs = [Pair(p.id, p.a, p.b, p.label) for p in generated[part]]
            elif dataset == "rules":
                pairs = load_pairs(files[f"{dataset}.{part}"])
            else:
                by_id = {p.id: p for p in everything[dataset]}
                ids = files[f"{dataset}.{part}"].read_text(encoding="utf-8").split()
                pairs = [by_id[i] for i in ids]
            result[dataset][part] = pairs[:limit]
    return result


def audit(pairs: Sequence[Pair], part: str) -> list[Pair]:
    """Quora pairs under the audit's reading (``AUDIT/qqp.<part>.json``)."""
    path = AUDIT / f"qqp.{part}.json"
    same = {k for k, v in json.loads(path.read_text()).items() if v} if path.exists() else set()
    return [dataclasses.replace(p, same_answer=True) if p.id in same else p for p in pairs]


class Remembered(BaseEmbedder):
    """An embedder that remembers its vectors until :meth:`forget`: one chunk of pairs is
    judged twice (verifier off, then on) and embedded once."""

    def __init__(self, inner: BaseEmbedder) -> None:
        self.inner = inner
        # The same model id: the verifier's `auto` mode reads it.
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self._known: dict[str, list[float]] = {}

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            self._known.update(zip(missing, await self.inner.embed(missing), strict=True))
        return [self._known[t] for t in texts]

    def forget(self) -> None:
        self._known.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, slots=True)
class Judged:
    """One split's pairs with both decisions' scores."""

    pairs: list[tuple[str, str]]
    """``(stored, lookup)`` texts: a pair's verifier threshold depends on its words."""
    labels: list[bool]
    similarity: list[float]
    agrees: list[bool]
    """Whether the agreement check let the pair through (with the verifier off)."""
    probability: list[float | None] | None
    """The verifier's probability, ``None`` for a pair that did not reach it; ``None``
    for a split judged without the verifier."""


async def judge_split(
    pairs: Sequence[Pair],
    embedder: Remembered,
    off: CacheSettings,
    on: CacheSettings | None,
    label: str = "",
) -> Judged:
    """Judge ``pairs`` with the verifier off (and with it on, when ``on`` is given)."""
    similarity: list[float] = []
    agrees: list[bool] = []
    probability: list[float | None] = []
    started = time.perf_counter()
    for start in range(0, len(pairs), CHUNK):
        chunk = [(p.a, p.b) for p in pairs[start : start + CHUNK]]
        plain = await judge_pairs(chunk, settings=off, embedder=embedder)
        similarity += [j.similarity for j in plain]
        # At the near-zero gate, a pair is a hit unless the agreement check refused it.
        agrees += [j.reason == "hit" for j in plain]
        if on is not None:
            verified: list[Judgement] = await judge_pairs(chunk, settings=on, embedder=embedder)
            probability += [j.probability for j in verified]
        embedder.forget()
        if label:
            done = min(start + CHUNK, len(pairs))
            sys.stderr.write(
                f"{label}: {done}/{len(pairs)} pairs ({time.perf_counter() - started:.0f} s)\n"
            )
    return Judged(
        pairs=[(p.a, p.b) for p in pairs],
        labels=[p.same_answer for p in pairs],
        similarity=similarity,
        agrees=agrees,
        probability=probability if on is not None else None,
    )


def lowest_threshold(
    scores: Sequence[float], passes: Sequence[bool], labels: Sequence[bool], rate: float
) -> float:
    """The lowest threshold at which ``passes and score >= t`` serves at most ``rate`` of
    the different-answer pairs: just above the first one that must be refused."""
    negatives = sorted(
        (s for s, ok, y in zip(scores, passes, labels, strict=True) if ok and not y),
        reverse=True,
    )
    allowed = math.floor(rate * sum(1 for y in labels if not y))
    if allowed >= len(negatives):
        return 0.0
    return math.nextafter(negatives[allowed], math.inf)


@dataclass(frozen=True, slots=True)
class Rates:
    """Share of same-answer pairs served, share of the others served."""

    recall: float
    false_hits: float


def rates_of(served: Sequence[bool], labels: Sequence[bool]) -> Rates:
    positives = [s for s, y in zip(served, labels, strict=True) if y]
    negatives = [s for s, y in zip(served, labels, strict=True) if not y]
    return Rates(
        recall=sum(positives) / len(positives) if positives else math.nan,
        false_hits=sum(negatives) / len(negatives) if negatives else math.nan,
    )


def similarity_served(judged: Judged, threshold: float) -> list[bool]:
    """Today's decision at ``threshold``: similarity at or above it, texts that agree."""
    return [ok and s >= threshold for s, ok in zip(judged.similarity, judged.agrees, strict=True)]


def verifier_served(judged: Judged, thresholds: Thresholds | float) -> list[bool]:
    """The verifier's decision at ``thresholds``: it gave a probability at or above the
    threshold its pair takes."""
    assert judged.probability is not None
    if not isinstance(thresholds, Thresholds):
        thresholds = Thresholds.single(thresholds)
    return [
        p is not None and p >= thresholds.for_pair(stored, lookup)
        for p, (stored, lookup) in zip(judged.probability, judged.pairs, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision's threshold (the verifier's: the one of pairs worded differently,
    with ``reordered``, the one of pairs sharing their words) and its test-split figures
    per dataset."""

    threshold: float
    rates: dict[str, Rates]
    reordered: float | None = None


@dataclass(frozen=True, slots=True)
class AtRate:
    """Both decisions at one ``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE``."""

    max_false_hit_rate: float
    verifier: Decision
    similarity: Decision
    """Today's decision, its threshold holding QQP, PAWS and the paraphrase pairs each (as
    the verifier's)."""
    similarity_qqp: Decision
    """Today's decision, its threshold holding QQP alone (PAWS traps not counted)."""


def verifier_thresholds(rate: float, embedder: BaseEmbedder) -> Thresholds:
    """The thresholds the cache's default verifier runs with at ``rate``."""
    verifier = load_verifier(CacheSettings(max_false_hit_rate=rate), embedder)
    if verifier is None:
        raise SystemExit("the verifier is off with this embedder: the benchmark needs `local`")
    return verifier.thresholds


def figures(
    calibrate: dict[str, Judged], test: dict[str, Judged], embedder: BaseEmbedder
) -> list[AtRate]:
    """Both decisions at each of :data:`RATES`."""
    result = []
    for rate in RATES:
        t_verifier = verifier_thresholds(rate, embedder)
        # Today's thresholds, chosen on calibrate as the card's were.
        t_qqp, t_paws, t_generated = (
            lowest_threshold(c.similarity, c.agrees, c.labels, rate)
            for c in (calibrate["qqp"], calibrate["paws"], calibrate["paraphrases"])
        )

        def today(t: float) -> Decision:
            return Decision(
                t, {k: rates_of(similarity_served(j, t), j.labels) for k, j in test.items()}
            )

        served = {k: rates_of(verifier_served(j, t_verifier), j.labels) for k, j in test.items()}
        result.append(
            AtRate(
                max_false_hit_rate=rate,
                verifier=Decision(t_verifier.threshold, served, t_verifier.reordered),
                similarity=today(max(t_qqp, t_paws, t_generated)),
                similarity_qqp=today(t_qqp),
            )
        )
    return result


async def measure(
    splits: dict[str, dict[str, list[Pair]]], inner: BaseEmbedder
) -> tuple[list[AtRate], dict[str, Judged]]:
    """Judge the calibrate split (verifier off) and the test split (off and on)."""
    embedder = Remembered(inner)
    defaults = CacheSettings()
    off = dataclasses.replace(
        defaults, verifier="off", threshold=NEAR_ZERO, rejection_threshold=None
    )
    on = dataclasses.replace(defaults, verifier_threshold=_PROVISIONAL_THRESHOLD)
    if load_verifier(on, embedder) is None:
        raise SystemExit("the verifier is off with this embedder: the benchmark needs `local`")
    calibrate = {
        k: await judge_split(v["calibrate"], embedder, off, None, f"{k} calibrate")
        for k, v in splits.items()
    }
    test = {
        k: await judge_split(v["test"], embedder, off, on, f"{k} test") for k, v in splits.items()
    }
    # Thresholds are chosen on the audited labels; the test split is reported both ways.
    calibrate["qqp"] = dataclasses.replace(
        calibrate["qqp"],
        labels=[p.same_answer for p in audit(splits["qqp"]["calibrate"], "calibrate")],
    )
    test["qqp_raw"] = test["qqp"]
    test["qqp"] = dataclasses.replace(
        test["qqp"], labels=[p.same_answer for p in audit(splits["qqp"]["test"], "test")]
    )
    return figures(calibrate, test, embedder), test


@dataclasses.dataclass(frozen=True, slots=True)
class Ceilings:
    """What no decision could beat on Quora's test split, whatever its model."""

    agreement: float
    """Share of the (audited) duplicates the agreement check lets through: a decision
    that keeps the check serves no more of them."""
    relabelled: int
    """"Different" pairs the audit read as wanting the same answer."""
    raw_negatives: int
    perfect_raw_recall: dict[float, float]
    """Per rate, the most of Quora's raw duplicates a judge that serves exactly the
    same-answer pairs could serve within the rate on the raw labels: every relabelled
    pair it serves counts as a false hit there, so it can serve ``rate * raw_negatives /
    relabelled`` of the same-answer pairs (unless it learns which of them Quora's
    labellers marked different)."""


def ceilings(test: dict[str, Judged]) -> Ceilings:
    audited, raw = test["qqp"], test["qqp_raw"]
    relabelled = sum(a and not r for a, r in zip(audited.labels, raw.labels, strict=True))
    negatives = len(raw.labels) - sum(raw.labels)
    through = [ok for ok, y in zip(audited.agrees, audited.labels, strict=True) if y]
    return Ceilings(
        agreement=sum(through) / len(through) if through else math.nan,
        relabelled=relabelled,
        raw_negatives=negatives,
        perfect_raw_recall={
            r: min(1.0, r * negatives / relabelled) if relabelled else 1.0 for r in RATES
        },
    )


def _percent(value: float, decimals: int) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.{decimals}f} %"


def markdown(
    rows: Sequence[AtRate], sizes: dict[str, tuple[int, int]], split: str, bounds: Ceilings
) -> str:
    """The figures as a Markdown table, then the ceilings."""
    names = {"qqp": "QQP (audited)", "qqp_raw": "QQP (raw labels)", "paws": "PAWS",
             "rules": "rule pairs", "paraphrases": "generated paraphrases"}  # fmt: skip
    size = ", ".join(
        f"{names.get(name, name)} {pairs:,} ({positives:,} same answer)"
        for name, (pairs, positives) in sizes.items()
    )
    lines = [
        f"Test split of `{split}`: {size}.",
        "",
        "| `SEMANTIC_CACHE_MAX_FALSE_HIT_RATE` | Decision | Threshold | QQP recall | "
        "QQP false hits | QQP raw labels: recall / false hits | PAWS false hits | "
        "Rule pairs: false hits | Paraphrases: recall / false hits |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        # The verifier against today's decision held to the rate on QQP alone: the higher
        # of the two similarity-only recalls.
        base = row.similarity_qqp.rates["qqp"].recall
        gain = row.verifier.rates["qqp"].recall / base if base else math.inf
        for name, decision, note in (
            ("similarity only, threshold for QQP", row.similarity_qqp, ""),
            ("similarity only, threshold for all", row.similarity, ""),
            ("**verifier** (threshold for all)", row.verifier, f" ({gain:.1f}x)"),
        ):
            r = decision.rates
            shown = f"{decision.threshold:.4f}"
            if decision.reordered is not None and decision.reordered != decision.threshold:
                shown += f" / {decision.reordered:.4f}"
            lines.append(
                f"| {100 * row.max_false_hit_rate:g} % | {name} | {shown} | "
                f"{_percent(r['qqp'].recall, 1)}{note} | {_percent(r['qqp'].false_hits, 2)} | "
                f"{_percent(r['qqp_raw'].recall, 1)} / {_percent(r['qqp_raw'].false_hits, 2)} | "
                f"{_percent(r['paws'].false_hits, 2)} | {_percent(r['rules'].false_hits, 2)} | "
                f"{_percent(r['paraphrases'].recall, 1)} / "
                f"{_percent(r['paraphrases'].false_hits, 2)} |"
            )
    perfect = ", ".join(
        f"{_percent(rate, 1)}: {_percent(recall, 1)}"
        for rate, recall in bounds.perfect_raw_recall.items()
    )
    lines += [
        "",
        f"Ceilings: the agreement check lets {_percent(bounds.agreement, 1)} of the QQP "
        "duplicates through. The audit read "
        f'{bounds.relabelled:,} of the {bounds.raw_negatives:,} raw "different" pairs as '
        "wanting the same answer (it read only the top-scored ones), so a judge that serves "
        "only same-answer pairs, choosing among them without regard to Quora's label, can "
        f"serve at most about this share of the raw duplicates within each raw rate: {perfect}.",
    ]
    return "\n".join(lines) + "\n"


def as_json(
    rows: Sequence[AtRate], sizes: dict[str, tuple[int, int]], seconds: float, bounds: Ceilings
) -> Any:
    def decision(d: Decision) -> dict[str, Any]:
        shown: dict[str, Any] = {"threshold": d.threshold}
        if d.reordered is not None:
            shown["reordered_threshold"] = d.reordered
        return shown | {
            k: {"recall": r.recall, "false_hits": r.false_hits} for k, r in d.rates.items()
        }

    return {
        "test_pairs": {k: {"pairs": n, "positives": p} for k, (n, p) in sizes.items()},
        "seconds": seconds,
        "rates": [
            {
                "max_false_hit_rate": row.max_false_hit_rate,
                "verifier": decision(row.verifier),
                "similarity_only": decision(row.similarity),
                "similarity_only_qqp": decision(row.similarity_qqp),
            }
            for row in rows
        ],
        "ceilings": {
            "agreement": bounds.agreement,
            "relabelled": bounds.relabelled,
            "raw_negatives": bounds.raw_negatives,
            "perfect_raw_recall": [
                {"max_false_hit_rate": r, "recall": v} for r, v in bounds.perfect_raw_recall.items()
            ],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split",
        type=Path,
        default=DEFAULT_SPLIT,
        metavar="DIR",
        help=f"the folder training.verifier.split / rules wrote (default ${SPLIT_ENV}, "
        "else /work/train-out)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="QQP dev.jsonl")
    parser.add_argument("--paws", type=Path, default=DEFAULT_PAWS, help="PAWS-Wiki dev.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="the first N pairs per split")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    problems = missing_inputs(args.data, args.paws, args.split)
    if problems:
        for problem in problems:
            sys.stderr.write(f"error: {problem}\n")
        return 2
    splits = load_splits(args.data, args.paws, args.split, args.limit)
    from semanticcache._embedders.local import LocalEmbedder

    started = time.perf_counter()
    embedder = LocalEmbedder()
    try:
        rows, test = asyncio.run(measure(splits, embedder))
    finally:
        embedder.close()
    seconds = time.perf_counter() - started
    sizes = {k: (len(j.labels), sum(j.labels)) for k, j in test.items()}
    bounds = ceilings(test)
    text = markdown(rows, sizes, str(args.split), bounds)
    sys.stdout.write(text)
    sys.stdout.write(f"\n{seconds:.0f} s\n")
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(as_json(rows, sizes, seconds, bounds), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
