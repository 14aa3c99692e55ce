"""Package a trained cross-encoder as the cache's verifier: its model file and its card.

Scores the calibrate and test splits with the runtime's own code (the packaged tokenizer
and ONNX Runtime, :class:`semanticcache._verifier.model.CrossEncoder`), the local
embedder's cosine and the agreement check, then writes into the package:

- the ONNX file, and a card (JSON) with its sha256 and window;
- the wording model (``training/verifier/wording.py``: boosted trees over the pair's
  wording and the local embedder's similarity), trained on the train splits;
- ``platt``: a logistic fit of the cross-encoder's logit and the wording model's score
  on the calibrate pairs (Quora and PAWS);
- ``floor``: the stage-1 similarity that gave the most Quora-calibrate recall at 1 %;
- ``table``: per false-hit rate, the thresholds whose decision (similarity >= floor,
  texts agree, probability >= t) served at most that share of the calibrate negatives,
  Quora, PAWS and the generated paraphrase pairs each: ``reordered_threshold`` for the
  pairs that share at least ``reordered_words`` of their words (where word order
  decides: PAWS's swaps), ``threshold`` for the others; of the pairs that hold every
  rate, the one that serves the most Quora-calibrate duplicates. ``reordered_words`` is
  chosen the same way at 1 %.

Quora's labels are read through the audit (``audit/qqp.<split>.json``): the pairs labelled
"different" that score highest were read one by one, and those that want the same answer
count as same-answer pairs. Figures are reported with the audited and the raw labels.

Then it reports the test splits' figures at each rate beside today's similarity-only
decision (cosine + agreement check, its threshold chosen on calibrate the same way), and
writes them to ``OUT/card/results.json``.

    python -m training.verifier.card --qqp Q --paws P --out /work/train-out \\
        --onnx /work/train-out/cross-encoder-full/ckpt-0003758.int8.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from semanticcache._agreement import texts_agree
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._verifier.card import PACKAGED_CARD, load_card
from semanticcache._verifier.model import CrossEncoder
from semanticcache._verifier.wording import word_overlap
from training.verifier import wording
from training.verifier.common import DEFAULT_OUT, LabelledPair, load_jsonl, load_split

AUDIT: Final = Path(__file__).parent / "audit"

MODEL_FILE: Final = "verifier-minilm-l6.int8.onnx"
WORDING_FILE: Final = "verifier-wording.npz"
NAME: Final = "semcache-verifier-minilm-l6-1"
MAX_TOKENS: Final = 128
RATES: Final = (0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
FLOORS: Final = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85)
# Shares of shared words from which a pair takes the reordered threshold (2.0: never).
REORDERED_WORDS: Final = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 2.0)
TARGET: Final = 0.01
SPLITS: Final = ("train", "calibrate", "test")
# Each rate is held with this confidence: the calibrate split's false-hit rate is itself an
# estimate (892 PAWS negatives allow 8 at 1 %), and a threshold at the estimate lets
# through more on new pairs about half the time.
CONFIDENCE: Final = 0.9

Array = npt.NDArray[np.float64]


class Scored:
    """One split's pairs with everything the decision reads."""

    def __init__(self, pairs: Sequence[LabelledPair], cos: Array, agree: Any, logit: Array):
        self.pairs = pairs
        self.y = np.array([p.label for p in pairs], dtype=bool)
        self.cos = cos
        self.agree = np.asarray(agree, dtype=bool)
        self.logit = logit
        self.overlap = np.array([word_overlap(p.a, p.b) for p in pairs], dtype=np.float64)

    def relabelled(self, pairs: Sequence[LabelledPair]) -> Scored:
        """The same scores under other labels for the same pairs."""
        assert [p.id for p in pairs] == [p.id for p in self.pairs]
        return Scored(pairs, self.cos, self.agree, self.logit)


def audited(pairs: Sequence[LabelledPair], split: str) -> list[LabelledPair]:
    """Quora pairs with the audit's reading: a "different" pair read as wanting the same
    answer counts as same-answer."""
    path = AUDIT / f"qqp.{split}.json"
    same = {k for k, v in json.loads(path.read_text()).items() if v} if path.exists() else set()
    return [dataclasses.replace(p, label=True) if p.id in same else p for p in pairs]


def _score(pairs: Sequence[LabelledPair], embedder: LocalEmbedder, model: CrossEncoder) -> Scored:
    a = np.array(embedder.embed_sync([p.a for p in pairs]), dtype=np.float64)
    b = np.array(embedder.embed_sync([p.b for p in pairs]), dtype=np.float64)
    cos = (a * b).sum(axis=1)
    agree = [texts_agree(p.b, p.a) for p in pairs]
    logits: list[float] = []
    for start in range(0, len(pairs), 64):
        chunk = pairs[start : start + 64]
        logits += model.logits_sync([(p.a, p.b) for p in chunk])
    return Scored(pairs, cos, agree, np.array(logits))


def _probability(logit: Array, wording: Array, platt: tuple[float, float, float]) -> Array:
    z = platt[0] * logit + platt[1] * wording + platt[2]
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def allowed_negatives(n: int, rate: float, confidence: float | None) -> int:
    """How many of ``n`` calibrate negatives a threshold for ``rate`` may let through:
    ``floor(rate * n)``, or, with ``confidence``, the most whose one-sided Clopper-Pearson
    upper bound on the false-hit rate is still at most ``rate`` (-1: not even none)."""
    if confidence is None:
        return int(np.floor(rate * n))
    from scipy.stats import beta  # type: ignore[import-untyped]

    k = -1
    while k + 1 < n and float(beta.ppf(confidence, k + 2, n - k - 1)) <= rate:
        k += 1
    return k


def _lowest_threshold(
    score: Array, passes: Any, y: Any, rate: float, confidence: float | None = None
) -> float:
    """The lowest t at which ``passes & score >= t`` serves at most ``rate`` of negatives
    (with ``confidence``: at most ``rate`` with that confidence, on new pairs alike)."""
    negatives = np.sort(score[passes & ~y])[::-1]
    allowed = allowed_negatives(int((~y).sum()), rate, confidence)
    if allowed >= len(negatives):
        return 0.0
    if allowed < 0:
        return float(np.nextafter(negatives[0], np.inf))
    return float(np.nextafter(negatives[allowed], np.inf))


# (threshold, reordered threshold, reordered words): the decision's thresholds.
Cut = tuple[float, float, float]


def _served(s: Scored, floor: float, score: Array, t: float | Cut, agreement: bool = True) -> Any:
    passes = s.cos >= floor
    if agreement:
        passes &= s.agree
    if isinstance(t, tuple):
        low, reordered, words = t
        return passes & (score >= np.where(s.overlap >= words, reordered, low))
    return passes & (score >= t)


def _rates(s: Scored, served: Any) -> dict[str, float]:
    return {"recall": float(served[s.y].mean()), "false_hits": float(served[~s.y].mean())}


_HELD: Final = ("qqp", "paws", "paraphrases")


def _joint_threshold(
    cal: dict[str, Scored],
    floor: float,
    score: dict[str, Array],
    rate: float,
    confidence: float | None = None,
) -> float:
    return max(
        _lowest_threshold(
            score[k], (cal[k].cos >= floor) & cal[k].agree, cal[k].y, rate, confidence
        )
        for k in _HELD
    )


def _above(sorted_desc: Array, allowed: int) -> float | None:
    """The lowest threshold that lets through ``allowed`` of the negatives' scores
    ``sorted_desc`` (``None`` for a negative ``allowed``: more were let through already)."""
    if allowed < 0:
        return None
    if allowed >= len(sorted_desc):
        return 0.0
    return float(np.nextafter(sorted_desc[allowed], np.inf))


def _joint_cut(
    cal: dict[str, Scored],
    floor: float,
    score: dict[str, Array],
    rate: float,
    words: float,
    confidence: float | None = None,
) -> tuple[Cut, float]:
    """The thresholds for pairs below and at or above ``words`` that hold each of
    Quora, PAWS and the paraphrases to ``rate`` on calibrate, together, and serve the
    most Quora-calibrate duplicates; and that recall."""
    # A set too small to allow even none at this rate (-1) allows none: every threshold
    # above all of its negatives.
    allowed = {
        k: max(0, allowed_negatives(int((~cal[k].y).sum()), rate, confidence)) for k in _HELD
    }
    negatives: dict[str, tuple[Array, Array]] = {}
    for k in _HELD:
        s = cal[k]
        bad = (s.cos >= floor) & s.agree & ~s.y
        shared = s.overlap >= words
        negatives[k] = (
            np.sort(score[k][bad & shared])[::-1],
            np.sort(score[k][bad & ~shared])[::-1],
        )
    # Each reordered threshold worth trying sits just above a reordered negative's score.
    tops = np.concatenate([n[0] for n in negatives.values()])
    candidates = sorted({0.0, *(float(np.nextafter(x, np.inf)) for x in tops)})
    qqp = cal["qqp"]
    best: tuple[Cut, float] | None = None
    for reordered in candidates:
        lows = []
        for k in _HELD:
            high, low = negatives[k]
            spent = int((high >= reordered).sum())
            lows.append(_above(low, allowed[k] - spent))
        if any(t is None for t in lows):
            continue
        cut = (max(t for t in lows if t is not None), reordered, words)
        recall = _rates(qqp, _served(qqp, floor, score["qqp"], cut))["recall"]
        if best is None or recall > best[1]:
            best = (cut, recall)
    if best is None:
        # Not even a threshold above every negative holds it: serve nothing.
        return (1.0 + 1e-9, 1.0 + 1e-9, words), 0.0
    if words > 1.0:
        # No pair shares more than all its words: one threshold.
        cut, recall = best
        return (cut[0], cut[0], words), recall
    return best


def main(argv: Sequence[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qqp", type=Path, required=True)
    parser.add_argument("--paws", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--onnx", type=Path, required=True, help="the int8 ONNX model")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs per split")
    parser.add_argument(
        "--confidence", type=float, default=CONFIDENCE,
        help="hold each rate with this one-sided confidence (0: the calibrate rate itself)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 <= args.confidence < 1:
        parser.error(f"--confidence must be at least 0 and below 1, not {args.confidence}")
    args.confidence = args.confidence or None

    t0 = time.monotonic()
    data = {
        "qqp": load_split(args.out, "qqp", load_jsonl(args.qqp)),
        "paws": load_split(args.out, "paws", load_jsonl(args.paws)),
        "rules": {s: load_jsonl(args.out / "rules" / f"{s}.jsonl") for s in SPLITS},
        "paraphrases": {s: load_jsonl(args.out / "paraphrases" / f"{s}.jsonl") for s in SPLITS},
    }
    sha = hashlib.sha256(args.onnx.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        # A provisional card, to run the model through the runtime's own code.
        shutil.copyfile(args.onnx, Path(tmp) / MODEL_FILE)
        table = [{"max_false_hit_rate": 1.0, "threshold": 0.5, "reordered_threshold": 0.5}]
        provisional = {
            "name": NAME, "model": MODEL_FILE, "sha256": sha, "max_tokens": MAX_TOKENS,
            "platt": {"logit": 1.0, "wording": 0.0, "intercept": 0.0},
            "wording_model": WORDING_FILE, "wording_sha256": "", "similarity_embedder": "",
            "floor": 0.0, "reordered_words": 2.0, "table": table,
        }  # fmt: skip
        (Path(tmp) / "card.json").write_text(json.dumps(provisional))
        model = CrossEncoder(load_card(Path(tmp) / "card.json"))
        embedder = LocalEmbedder()
        scored: dict[str, dict[str, Scored]] = {
            k: {s: _score(v[s][: args.limit], embedder, model) for s in ("calibrate", "test")}
            for k, v in data.items()
        }
    print(f"scored in {time.monotonic() - t0:.0f} s")
    # The raw Quora labels stay beside the audited ones, for the report.
    scored["qqp_raw"] = scored["qqp"]
    scored["qqp"] = {s: v.relabelled(audited(v.pairs, s)) for s, v in scored["qqp_raw"].items()}
    cal = {k: scored[k]["calibrate"] for k in scored}
    test = {k: scored[k]["test"] for k in scored}

    # The wording model, on every train split (Quora's raw labels: the audit reads only
    # calibrate and test).
    train_pairs = [p for k in data for p in data[k]["train"][: args.limit]]
    train_x = wording.features(train_pairs, wording.cosines(train_pairs, embedder))
    trees = wording.export(wording.train(train_x, np.array([p.label for p in train_pairs])))
    worded = {
        k: {s: trees.logits(wording.features(v.pairs, v.cos)) for s, v in scored[k].items()}
        for k in scored
    }
    print(f"wording model: {trees.feature.shape[0]} trees, {time.monotonic() - t0:.0f} s")
    # The cross-encoder and the wording model err on different pairs: both separate more.
    fit_x = np.concatenate(
        [np.column_stack([cal[k].logit, worded[k]["calibrate"]]) for k in ("qqp", "paws")]
    )
    fit_y = np.concatenate([cal["qqp"].y, cal["paws"].y])
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(fit_x, fit_y)
    platt = (float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0]))
    prob = {
        k: {s: _probability(v.logit, worded[k][s], platt) for s, v in scored[k].items()}
        for k in scored
    }
    cal_prob = {k: prob[k]["calibrate"] for k in prob}

    floor, words = max(
        ((f, w) for f in FLOORS for w in REORDERED_WORDS),
        key=lambda fw: _joint_cut(cal, fw[0], cal_prob, TARGET, fw[1], args.confidence)[1],
    )
    cuts = {r: _joint_cut(cal, floor, cal_prob, r, words, args.confidence)[0] for r in RATES}
    # A lower rate never takes a lower threshold of either kind (raising one only ever
    # serves fewer negatives: the lower rate still holds).
    for lower, higher in reversed(list(itertools.pairwise(RATES))):
        a, b = cuts[lower], cuts[higher]
        cuts[lower] = (max(a[0], b[0]), max(a[1], b[1]), words)
    table = [
        {"max_false_hit_rate": r, "threshold": cuts[r][0], "reordered_threshold": cuts[r][1]}
        for r in RATES
    ]

    results: dict[str, Any] = {
        "platt": platt,
        "floor": floor,
        "reordered_words": words,
        "rates": [],
        "qqp_only": [],
    }
    for row in table:
        rate = row["max_false_hit_rate"]
        t = (row["threshold"], row["reordered_threshold"], words)
        # Today's decision at the same rate: cosine (+ agreement), thresholded on calibrate.
        cos_cal = {k: cal[k].cos for k in cal}
        base_t = _joint_threshold(cal, 0.0, cos_cal, rate)
        entry: dict[str, Any] = {
            "max_false_hit_rate": rate,
            "threshold": t[0],
            "reordered_threshold": t[1],
        }
        entry["baseline_threshold"] = base_t
        for k in ("qqp", "qqp_raw", "paws", "rules", "paraphrases"):
            entry[k] = _rates(test[k], _served(test[k], floor, prob[k]["test"], t))
            entry[f"{k}_baseline"] = _rates(test[k], _served(test[k], 0.0, test[k].cos, base_t))
        results["rates"].append(entry)
        q, qb, p = entry["qqp"], entry["qqp_baseline"], entry["paws"]
        qr, g = entry["qqp_raw"], entry["paraphrases"]
        print(
            f"rate {rate:<6} t={t[0]:.4f}/{t[1]:.4f}  QQP-test recall {100 * q['recall']:.1f}% "
            f"fhr {100 * q['false_hits']:.2f}% (raw labels {100 * qr['recall']:.1f}% "
            f"{100 * qr['false_hits']:.2f}%)  PAWS fhr {100 * p['false_hits']:.2f}%  "
            f"paraphrases {100 * g['recall']:.1f}% fhr {100 * g['false_hits']:.2f}%  |  "
            f"similarity only: recall {100 * qb['recall']:.1f}% "
            f"fhr {100 * qb['false_hits']:.2f}% PAWS fhr "
            f"{100 * entry['paws_baseline']['false_hits']:.2f}%"
        )

    # Against today's default as it ships (cosine + agreement, held on QQP alone), both
    # thresholds chosen on QQP-calibrate only: the "same false-hit rate".
    for rate in (0.005, 0.01, 0.02):
        t_qqp = _lowest_threshold(cal_prob["qqp"], (cal["qqp"].cos >= floor) & cal["qqp"].agree,
                                  cal["qqp"].y, rate)  # fmt: skip
        base_t = _lowest_threshold(cal["qqp"].cos, cal["qqp"].agree, cal["qqp"].y, rate)
        versus: dict[str, Any] = {"max_false_hit_rate": rate, "threshold": t_qqp}
        versus["baseline"] = base_t
        for k in ("qqp", "paws"):
            versus[k] = _rates(test[k], _served(test[k], floor, prob[k]["test"], t_qqp))
            versus[f"{k}_baseline"] = _rates(test[k], _served(test[k], 0.0, test[k].cos, base_t))
        results["qqp_only"].append(versus)
        print(
            f"QQP-only rate {rate}: verifier recall {100 * versus['qqp']['recall']:.1f}% "
            f"fhr {100 * versus['qqp']['false_hits']:.2f}% "
            f"PAWS {100 * versus['paws']['false_hits']:.2f}%"
            f" | default recall {100 * versus['qqp_baseline']['recall']:.1f}% "
            f"fhr {100 * versus['qqp_baseline']['false_hits']:.2f}% "
            f"PAWS {100 * versus['paws_baseline']['false_hits']:.2f}%"
        )
    out = args.out / "card"
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {f"{k}_{s}_wording": worded[k][s] for k in scored for s in scored[k]}
    arrays.update(
        {f"{k}_{s}_{f}": getattr(scored[k][s], f) for k in scored for s in scored[k]
         for f in ("y", "cos", "agree", "logit")}
    )  # fmt: skip
    np.savez(out / "scores.npz", **arrays)
    trees.save(out / WORDING_FILE)
    trees_bytes = (out / WORDING_FILE).read_bytes()
    card = {
        "name": NAME,
        "model": MODEL_FILE,
        "sha256": sha,
        "max_tokens": MAX_TOKENS,
        "platt": dict(zip(("logit", "wording", "intercept"), platt, strict=True)),
        "wording_model": WORDING_FILE,
        "wording_sha256": hashlib.sha256(trees_bytes).hexdigest(),
        "similarity_embedder": embedder.model_id,
        "floor": floor,
        "reordered_words": words,
        "table": table,
    }
    PACKAGED_CARD.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.onnx, PACKAGED_CARD.parent / MODEL_FILE)
    (PACKAGED_CARD.parent / WORDING_FILE).write_bytes(trees_bytes)
    PACKAGED_CARD.write_text(json.dumps(card, indent=2) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"wrote {PACKAGED_CARD} and {out / 'results.json'} (floor {floor}, reordered words "
        f"{words}, platt {platt})"
    )


if __name__ == "__main__":
    main()
