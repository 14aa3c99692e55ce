"""The verifier's model card: its file, its window, its calibration and its threshold table.

The card (a JSON file beside the model) is written by ``training/verifier/card.py`` from
the calibrate split. ``platt`` maps two scores to a probability: the cross-encoder's
logit and the logit of the tree model over the pair's wording and stage-1 similarity
(``wording_model``: :mod:`semanticcache._verifier.features`, fit with the similarities
of ``similarity_embedder``; with any other embedder the floor stands in for them). The
two read a pair differently and err on different pairs; ``table`` gives,
for a false-hit rate, the lowest probabilities that held the calibrate pairs (Quora,
PAWS and the generated paraphrases alike) to it: ``threshold`` for pairs worded
differently, ``reordered_threshold`` for pairs sharing at least ``reordered_words`` of
their words (:mod:`semanticcache._verifier.wording`), where word order decides; ``floor``
is the stage-1 similarity below which the local embedder's candidates are not worth
scoring.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from semanticcache._verifier.wording import word_overlap
from semanticcache.errors import ConfigurationError

__all__ = ["PACKAGED_CARD", "ModelCard", "Thresholds", "load_card"]

PACKAGED_CARD: Final = Path(__file__).parent / "data" / "verifier-minilm-l6.json"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The probability a pair needs: ``reordered`` when the two texts share at least
    ``reordered_words`` of their words (``None``: never), else ``threshold``."""

    threshold: float
    reordered: float
    reordered_words: float | None = None

    @classmethod
    def single(cls, threshold: float) -> Thresholds:
        """One threshold for every pair."""
        return cls(threshold, threshold)

    @property
    def split(self) -> bool:
        """Whether pairs sharing their words take another threshold than the others."""
        return self.reordered_words is not None and self.reordered != self.threshold

    def serves(self, probability: float, stored: str, lookup: str) -> bool:
        """Whether ``probability`` reaches the threshold of ``(stored, lookup)`` (the
        words are counted only when the two thresholds disagree on it)."""
        low, high = sorted((self.threshold, self.reordered))
        if probability >= high:
            return True
        if probability < low:
            return False
        return probability >= self.for_pair(stored, lookup)

    def for_pair(self, stored: str, lookup: str) -> float:
        """The probability the pair ``(stored, lookup)`` needs to be served."""
        if self.reordered_words is None or not self.split:
            return self.threshold
        if word_overlap(stored, lookup) >= self.reordered_words:
            return self.reordered
        return self.threshold


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the runtime needs to know about a verifier model."""

    name: str
    model_path: Path
    sha256: str
    max_tokens: int
    platt: tuple[float, float, float]
    """``(a, c, b)``: the probability is ``1 / (1 + exp(-(a * logit + c * wording + b)))``."""
    wording_path: Path
    wording_sha256: str
    similarity_embedder: str
    """The embedder (its ``model_id``) whose similarities the wording model was fit with."""
    floor: float
    table: tuple[tuple[float, float, float], ...]
    """``(max_false_hit_rate, threshold, reordered_threshold)``, rates ascending."""
    reordered_words: float
    """The share of shared words from which a pair takes ``reordered_threshold``."""

    def probability(self, logit: float, wording: float) -> float:
        """The probability of a pair with the cross-encoder's ``logit`` and the wording
        model's ``wording`` score."""
        a, c, b = self.platt
        z = a * logit + c * wording + b
        # Written both ways so that neither branch overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def thresholds_for(self, max_false_hit_rate: float) -> Thresholds:
        """The table's thresholds for the largest rate that does not exceed the target."""
        usable = [
            Thresholds(t, reordered, self.reordered_words)
            for rate, t, reordered in self.table
            if rate <= max_false_hit_rate + 1e-12
        ]
        if not usable:
            lowest = self.table[0][0]
            raise ConfigurationError(
                f"the verifier {self.name} is calibrated down to a false-hit rate of "
                f"{lowest:g}, not {max_false_hit_rate:g}; set SEMANTIC_CACHE_VERIFIER_THRESHOLD "
                "from `semcache calibrate` instead"
            )
        return usable[-1]


def _number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"{where} must be a finite number")
    return float(raw)


def load_card(path: Path = PACKAGED_CARD) -> ModelCard:
    """The card at ``path``; its ``model`` is a file name in the same folder."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        table = tuple(
            (
                _number(row["max_false_hit_rate"], "rate"),
                _number(row["threshold"], "threshold"),
                _number(row["reordered_threshold"], "reordered_threshold"),
            )
            for row in raw["table"]
        )
        if not table or [r[0] for r in table] != sorted(r[0] for r in table):
            raise ValueError("table must be non-empty, rates ascending")
        platt = raw["platt"]
        if not isinstance(platt, dict):
            raise ValueError("platt must be an object with logit, wording and intercept")
        return ModelCard(
            name=str(raw["name"]),
            model_path=path.parent / str(raw["model"]),
            sha256=str(raw["sha256"]),
            max_tokens=int(raw["max_tokens"]),
            platt=(
                _number(platt["logit"], "platt logit"),
                _number(platt["wording"], "platt wording"),
                _number(platt["intercept"], "platt intercept"),
            ),
            wording_path=path.parent / str(raw["wording_model"]),
            wording_sha256=str(raw["wording_sha256"]),
            similarity_embedder=str(raw["similarity_embedder"]),
            floor=_number(raw["floor"], "floor"),
            table=table,
            reordered_words=_number(raw["reordered_words"], "reordered_words"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the verifier card {path}: {exc!r}") from exc
