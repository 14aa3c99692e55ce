"""The verifier's figures from scores on the calibrate and test splits.

A hit is ``score >= threshold``. The threshold is the lowest one with at most 1 % false
hits on QQP-calibrate (``qqp``); ``joint`` also holds PAWS-calibrate to 1 %. Both are
reported on the test splits: QQP recall and false-hit rate, PAWS false-hit rate (word
order traps served) and recall, and the rule pairs' accuracy per kind. ROC-AUC is the
test split's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.verifier.common import MAX_FPR, LabelledPair, rates_at, roc_auc, threshold_at_fpr

Scores = Mapping[str, Mapping[str, Sequence[float] | np.ndarray[Any, Any]]]
Pairs = Mapping[str, Mapping[str, Sequence[LabelledPair]]]


def _labels(pairs: Sequence[LabelledPair]) -> list[bool]:
    return [p.label for p in pairs]


def at_threshold(scores: Scores, pairs: Pairs, threshold: float) -> dict[str, Any]:
    """Test-split figures at ``threshold``."""
    qqp_recall, qqp_fpr = rates_at(scores["qqp"]["test"], _labels(pairs["qqp"]["test"]), threshold)
    paws_recall, paws_fpr = rates_at(
        scores["paws"]["test"], _labels(pairs["paws"]["test"]), threshold
    )
    out: dict[str, Any] = {
        "threshold": threshold,
        "qqp_test_recall": qqp_recall,
        "qqp_test_fhr": qqp_fpr,
        "paws_test_fhr": paws_fpr,
        "paws_test_recall": paws_recall,
    }
    if "rules" in scores:
        rule_pairs = pairs["rules"]["test"]
        hits = np.asarray(scores["rules"]["test"], dtype=np.float64) >= threshold
        correct = [bool(h) == p.label for h, p in zip(hits, rule_pairs, strict=True)]
        out["rules_test_accuracy"] = float(np.mean(correct))
        kinds: dict[str, list[bool]] = {}
        for ok, p in zip(correct, rule_pairs, strict=True):
            kinds.setdefault(p.kind, []).append(ok)
        out["rules_test_accuracy_by_kind"] = {k: float(np.mean(v)) for k, v in kinds.items()}
        negatives = [bool(h) for h, p in zip(hits, rule_pairs, strict=True) if not p.label]
        out["rules_test_fhr"] = float(np.mean(negatives)) if negatives else float("nan")
    return out


def summarise(scores: Scores, pairs: Pairs, max_fpr: float = MAX_FPR) -> dict[str, Any]:
    """AUCs, and the test figures at the QQP-only and the joint calibrate thresholds."""
    qqp_t = threshold_at_fpr(
        scores["qqp"]["calibrate"], _labels(pairs["qqp"]["calibrate"]), max_fpr
    )
    paws_t = threshold_at_fpr(
        scores["paws"]["calibrate"], _labels(pairs["paws"]["calibrate"]), max_fpr
    )
    test_labels = _labels(pairs["qqp"]["test"])
    own = threshold_at_fpr(scores["qqp"]["test"], test_labels, max_fpr)
    calibrate_labels = _labels(pairs["qqp"]["calibrate"])
    return {
        # For choosing between runs without reading the test split.
        "qqp_calibrate_auc": roc_auc(scores["qqp"]["calibrate"], calibrate_labels),
        "qqp_calibrate_recall_at_1pct": rates_at(
            scores["qqp"]["calibrate"], calibrate_labels, qqp_t
        )[0],
        "paws_calibrate_auc": roc_auc(
            scores["paws"]["calibrate"], _labels(pairs["paws"]["calibrate"])
        ),
        "qqp_test_auc": roc_auc(scores["qqp"]["test"], _labels(pairs["qqp"]["test"])),
        # Reference only (the threshold is chosen on the test split itself): less noisy
        # than the calibrated figure, which also carries the threshold's transfer error.
        "qqp_test_recall_at_own_threshold": rates_at(scores["qqp"]["test"], test_labels, own)[0],
        "paws_test_auc": roc_auc(scores["paws"]["test"], _labels(pairs["paws"]["test"])),
        "qqp_threshold": at_threshold(scores, pairs, qqp_t),
        "joint_threshold": at_threshold(scores, pairs, max(qqp_t, paws_t)),
    }


def format_summary(name: str, summary: Mapping[str, Any]) -> str:
    """One readable block of ``summarise``'s figures."""
    lines = [f"== {name}: QQP test AUC {summary['qqp_test_auc']:.4f}, "
             f"PAWS test AUC {summary['paws_test_auc']:.4f}, QQP test recall at the test's own "
             f"1% threshold {100 * summary['qqp_test_recall_at_own_threshold']:.1f}%",
             f"   calibrate: QQP AUC {summary['qqp_calibrate_auc']:.4f}, PAWS AUC "
             f"{summary['paws_calibrate_auc']:.4f}, QQP recall at 1% "
             f"{100 * summary['qqp_calibrate_recall_at_1pct']:.1f}%"]  # fmt: skip
    for key in ("qqp_threshold", "joint_threshold"):
        row = summary[key]
        text = (
            f"  {key:16} t={row['threshold']:.5f}  QQP recall {100 * row['qqp_test_recall']:.1f}%"
            f"  QQP FHR {100 * row['qqp_test_fhr']:.2f}%"
            f"  PAWS FHR {100 * row['paws_test_fhr']:.2f}%"
            f"  PAWS recall {100 * row['paws_test_recall']:.1f}%"
        )
        if "rules_test_accuracy" in row:
            text += f"  rules acc {100 * row['rules_test_accuracy']:.1f}%"
        lines.append(text)
    return "\n".join(lines)
