"""The admin tests' embedder: four questions at set cosines to a stored one, so that a
lookup's outcome (hit, near miss below the gate, far miss) is known in advance."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

from semanticcache import BaseEmbedder

DIM = 16


def unit(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    return v


def at(similarity: float, side: int) -> list[float]:
    """A unit vector at cosine ``similarity`` to e0, leaning towards e``side``."""
    s = math.sqrt(1 - similarity * similarity)
    return [similarity * a + s * b for a, b in zip(unit(0), unit(side), strict=True)]


class Questions(BaseEmbedder):
    """``stored question`` and, at cosines 0.955, 0.855 and 0.405 to it, ``close
    question``, ``near question`` and ``far question``; ``model_id`` names the table (a
    fresh one by default)."""

    dimension = DIM

    def __init__(self, model_id: str | None = None) -> None:
        self.model_id = model_id or f"admin-{secrets.token_hex(4)}"
        self.vectors = {
            "stored question": unit(0),
            "close question": at(0.955, 1),
            "near question": at(0.855, 2),
            "far question": at(0.405, 3),
        }

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]
