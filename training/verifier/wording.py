"""The verifier's model over wording: boosted trees on
:func:`semanticcache._verifier.features.wording_features`, trained on the train splits
and exported for :class:`semanticcache._verifier.trees.TreeEnsemble`.

The similarity is the local embedder's cosine (what stage 1 reports with it). The trees
may only raise a pair's score as its similarity rises (a monotonic constraint), so that
the floor, which stands in for another embedder's similarity, never overstates one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from semanticcache._embedders.local import LocalEmbedder
from semanticcache._verifier.features import FEATURES, wording_features
from semanticcache._verifier.trees import TreeEnsemble
from training.verifier.common import LabelledPair
from training.verifier.split import SEED

__all__ = ["cosines", "export", "features", "train"]

# Chosen on QQP-calibrate for the cheap model (README, "the cheap model").
SETTINGS: Final = {"max_iter": 600, "learning_rate": 0.05, "max_leaf_nodes": 31,
                   "l2_regularization": 1.0}  # fmt: skip

Matrix = npt.NDArray[np.float64]


def cosines(pairs: Sequence[LabelledPair], embedder: LocalEmbedder) -> Matrix:
    """The local embedder's cosine of each pair's two texts."""
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    vectors: dict[str, Any] = {}
    for start in range(0, len(texts), 256):
        chunk = texts[start : start + 256]
        vectors.update(zip(chunk, np.array(embedder.embed_sync(chunk)), strict=True))
    return np.array([float(vectors[p.a] @ vectors[p.b]) for p in pairs], dtype=np.float64)


def features(pairs: Sequence[LabelledPair], similarity: Matrix) -> Matrix:
    """The feature matrix of ``pairs`` (stored text ``a``, lookup text ``b``)."""
    rows = [wording_features(p.a, p.b, float(s)) for p, s in zip(pairs, similarity, strict=True)]
    return np.array(rows, dtype=np.float64).reshape(len(pairs), len(FEATURES))


def train(x: Matrix, y: npt.NDArray[np.bool_]) -> Any:
    """Boosted trees on ``x``, the score rising with the similarity (column 0)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    monotonic = [1] + [0] * (len(FEATURES) - 1)
    model = HistGradientBoostingClassifier(**SETTINGS, monotonic_cst=monotonic, random_state=SEED)
    return model.fit(x, y)


def export(model: Any) -> TreeEnsemble:
    """A fitted binary ``HistGradientBoostingClassifier`` as a :class:`TreeEnsemble`."""
    trees = [predictors[0].nodes for predictors in model._predictors]
    width = max(len(nodes) for nodes in trees)

    def padded(field: str, fill: float, dtype: Any) -> Any:
        out = np.full((len(trees), width), fill, dtype=dtype)
        for i, nodes in enumerate(trees):
            out[i, : len(nodes)] = nodes[field]
        return out

    leaf = padded("is_leaf", 1, np.int32).astype(bool)
    feature = np.where(leaf, -1, padded("feature_idx", 0, np.int32)).astype(np.int32)
    if any(nodes["is_categorical"].any() for nodes in trees):
        raise ValueError("categorical splits are not supported")
    return TreeEnsemble(
        feature=feature,
        threshold=padded("num_threshold", 0.0, np.float64),
        left=np.where(leaf, 0, padded("left", 0, np.int32)).astype(np.int32),
        right=np.where(leaf, 0, padded("right", 0, np.int32)).astype(np.int32),
        value=np.where(leaf, padded("value", 0.0, np.float64), 0.0),
        baseline=float(np.ravel(model._baseline_prediction)[0]),
    )
