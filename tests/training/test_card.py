"""The verifier card's thresholds (training/verifier/card.py): the two thresholds of a
rate hold each labelled set to it together, and pairs that share their words (word
order's traps) take the stricter one without setting the other."""

from __future__ import annotations

import numpy as np
import pytest
from training.verifier.card import Scored, _joint_cut, _served, allowed_negatives
from training.verifier.common import LabelledPair

REORDERED = ("flights from paris to rome", "flights from rome to paris")
REWORDED = ("how do i reset my router", "what resets a home modem")


def _set(scores: list[tuple[tuple[str, str], bool, float]]) -> tuple[Scored, np.ndarray]:
    pairs = [LabelledPair(str(i), a, b, y) for i, ((a, b), y, _) in enumerate(scores)]
    n = len(pairs)
    scored = Scored(pairs, np.ones(n), np.ones(n, dtype=bool), np.zeros(n))
    return scored, np.array([p for _, _, p in scores])


def _sets() -> tuple[dict[str, Scored], dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    # Quora-like: reworded duplicates score high, reworded negatives lower.
    qqp = [(REWORDED, True, float(p)) for p in rng.uniform(0.6, 1.0, 400)]
    qqp += [(REWORDED, False, float(p)) for p in rng.uniform(0.0, 0.8, 400)]
    # PAWS-like: every pair shares its words; its negatives score high too.
    paws = [(REORDERED, bool(i % 2), float(p)) for i, p in enumerate(rng.uniform(0.5, 1.0, 600))]
    paraphrases = [(REWORDED, True, 0.95)] * 50 + [(REWORDED, False, 0.1)] * 50
    cal, score = {}, {}
    for name, rows in (("qqp", qqp), ("paws", paws), ("paraphrases", paraphrases)):
        cal[name], score[name] = _set(rows)
    return cal, score


@pytest.mark.parametrize("rate", [0.002, 0.01, 0.05])
def test_the_cut_holds_every_set_to_the_rate_and_reordered_pairs_take_the_stricter(
    rate: float,
) -> None:
    cal, score = _sets()
    cut, recall = _joint_cut(cal, 0.0, score, rate, 0.75)
    low, reordered, words = cut
    assert words == 0.75
    for name, scored in cal.items():
        served = _served(scored, 0.0, score[name], cut)
        negatives = int((~scored.y).sum())
        # A set too small to allow even none at the rate (the paraphrases at 0.2 %)
        # allows none.
        assert served[~scored.y].sum() <= max(0, allowed_negatives(negatives, rate, None))
    # Only PAWS's pairs share their words, and its negatives score high: its threshold
    # is the stricter, and the reworded Quora pairs are not held to it.
    assert reordered > low
    assert recall == pytest.approx(_served(cal["qqp"], 0.0, score["qqp"], cut)[cal["qqp"].y].mean())
    single, single_recall = _joint_cut(cal, 0.0, score, rate, 2.0)
    assert single[0] == single[1]
    assert recall >= single_recall
