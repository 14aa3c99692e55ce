"""Shared pieces of the verifier scripts: labelled pairs, split files and the metrics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

SPLITS: Final = ("train", "calibrate", "test")
MAX_FPR: Final = 0.01
DEFAULT_OUT: Final = Path("/work/train-out")


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """One pair: ``label`` is true when the two texts want the same answer."""

    id: str
    a: str
    b: str
    label: bool
    kind: str = ""
    """For rule pairs: the rule that made it (``number``, ``negation``...)."""


def load_jsonl(path: Path) -> list[LabelledPair]:
    """The pairs of a ``{id, a, b, same_answer}`` JSONL file (extra fields ignored)."""
    pairs: list[LabelledPair] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                pairs.append(
                    LabelledPair(
                        str(row["id"]),
                        row["a"],
                        row["b"],
                        bool(row["same_answer"]),
                        str(row.get("kind", "")),
                    )
                )
    return pairs


def write_jsonl(path: Path, pairs: Iterable[LabelledPair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            row = {"id": p.id, "a": p.a, "b": p.b, "same_answer": p.label, "kind": p.kind}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_generated(folder: Path, by_split: dict[str, list[LabelledPair]]) -> None:
    """Write generated pairs as ``folder/<split>.jsonl`` and ``folder/sizes.json`` (pairs,
    same-answer pairs and kinds per split), and print the sizes."""
    sizes: dict[str, object] = {}
    for split, pairs in by_split.items():
        write_jsonl(folder / f"{split}.jsonl", pairs)
        sizes[split] = {
            "pairs": len(pairs),
            "positives": sum(p.label for p in pairs),
            "kinds": dict(Counter(p.kind for p in pairs)),
        }
    (folder / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    print(json.dumps(sizes))


def split_path(out: Path, dataset: str, split: str) -> Path:
    return out / "split" / f"{dataset}.{split}.ids"


def load_split(
    out: Path, dataset: str, pairs: Sequence[LabelledPair]
) -> dict[str, list[LabelledPair]]:
    """``pairs`` grouped by the split files ``split.py`` wrote for ``dataset``."""
    by_id = {p.id: p for p in pairs}
    result: dict[str, list[LabelledPair]] = {}
    for split in SPLITS:
        ids = split_path(out, dataset, split).read_text(encoding="utf-8").split()
        result[split] = [by_id[i] for i in ids]
    return result


FloatArray = npt.NDArray[np.float64]


def roc_auc(scores: Sequence[float] | FloatArray, labels: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties: half)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def threshold_at_fpr(
    scores: Sequence[float] | FloatArray, labels: Sequence[bool], max_fpr: float = MAX_FPR
) -> float:
    """The lowest threshold (a hit is ``score >= t``) whose false-positive rate on these
    pairs is at most ``max_fpr``: just above the ``k``-th highest negative score, where
    ``k`` is the number of negatives allowed through."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    negatives = np.sort(s[~y])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))
    if allowed >= len(negatives):
        return float("-inf")
    # Every negative at or above the (allowed+1)-th highest one must be refused.
    return float(np.nextafter(negatives[allowed], np.inf))


def rates_at(
    scores: Sequence[float] | FloatArray, labels: Sequence[bool], threshold: float
) -> tuple[float, float]:
    """(recall on positives, false-positive rate on negatives) at ``score >= threshold``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    hit = s >= threshold
    recall = float(hit[y].mean()) if y.any() else float("nan")
    fpr = float(hit[~y].mean()) if (~y).any() else float("nan")
    return recall, fpr
