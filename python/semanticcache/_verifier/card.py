"""The verifier's model card: its file, its window, its calibration and its threshold table.

The card (a JSON file beside the model) is written by ``training/verifier/card.py`` from
the calibrate split. ``platt`` maps the model's logit to a probability; ``table`` gives,
for a false-hit rate, the lowest probability that held the calibrate pairs (Quora and
PAWS alike) to it; ``floor`` is the stage-1 similarity below which the local embedder's
candidates are not worth scoring.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from semanticcache.errors import ConfigurationError

__all__ = ["PACKAGED_CARD", "ModelCard", "load_card"]

PACKAGED_CARD: Final = Path(__file__).parent / "data" / "verifier-minilm-l6.json"


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the runtime needs to know about a verifier model."""

    name: str
    model_path: Path
    sha256: str
    max_tokens: int
    platt: tuple[float, float]
    """``(a, b)``: the probability is ``1 / (1 + exp(-(a * logit + b)))``."""
    floor: float
    table: tuple[tuple[float, float], ...]
    """``(max_false_hit_rate, probability threshold)``, rates ascending."""

    def probability(self, logit: float) -> float:
        a, b = self.platt
        z = a * logit + b
        # Written both ways so that neither branch overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def threshold_for(self, max_false_hit_rate: float) -> float:
        """The table's threshold for the largest rate that does not exceed the target."""
        usable = [t for rate, t in self.table if rate <= max_false_hit_rate + 1e-12]
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
            (_number(row["max_false_hit_rate"], "rate"), _number(row["threshold"], "threshold"))
            for row in raw["table"]
        )
        if not table or [r for r, _ in table] != sorted(r for r, _ in table):
            raise ValueError("table must be non-empty, rates ascending")
        a, b = raw["platt"]
        return ModelCard(
            name=str(raw["name"]),
            model_path=path.parent / str(raw["model"]),
            sha256=str(raw["sha256"]),
            max_tokens=int(raw["max_tokens"]),
            platt=(_number(a, "platt"), _number(b, "platt")),
            floor=_number(raw["floor"], "floor"),
            table=table,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the verifier card {path}: {exc!r}") from exc
