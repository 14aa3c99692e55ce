"""A boosted tree ensemble, evaluated with numpy: the verifier's model over wording.

The file (``.npz``) holds every tree's nodes, padded to one length: ``feature`` (-1 at
a leaf), ``threshold`` (a value at or below it goes ``left``, above it ``right``),
``value`` (a leaf's score) and ``baseline``. A pair's score, a logit, is the baseline
plus the value of the leaf each tree sends it to. All trees descend together, one level
per step, so the cost is the trees' depth in numpy operations, not one Python step per
node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semanticcache.errors import ConfigurationError

__all__ = ["TreeEnsemble"]

Ints = npt.NDArray[np.int32]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class TreeEnsemble:
    """Trees of ``(feature, threshold, left, right, value)`` per node, shape (trees, nodes)."""

    feature: Ints
    threshold: Floats
    left: Ints
    right: Ints
    value: Floats
    baseline: float

    def __post_init__(self) -> None:
        arrays = (self.feature, self.threshold, self.left, self.right, self.value)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError("every node array must have the shape (trees, nodes)")
        nodes = self.feature.shape[1]
        inner = self.feature >= 0
        for side in (self.left, self.right):
            # A child comes after its parent, so every descent ends at a leaf.
            below = np.arange(nodes)[None, :]
            if np.any(inner & ((side <= below) | (side >= nodes))):
                raise ValueError("a node's child must be a later node of its tree")

    @property
    def inputs(self) -> int:
        """The number of features a row needs (at least)."""
        return int(self.feature.max()) + 1 if self.feature.size else 0

    def logits(self, rows: npt.ArrayLike) -> Floats:
        """One score per row of ``rows`` (shape (n, features))."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.inputs:
            raise ValueError(f"rows must have shape (n, {self.inputs} or more)")
        trees = np.arange(self.feature.shape[0])[None, :]
        samples = np.arange(x.shape[0])[:, None]
        node = np.zeros((x.shape[0], self.feature.shape[0]), dtype=np.int64)
        while True:
            feature = self.feature[trees, node]
            inner = feature >= 0
            if not inner.any():
                break
            goes_left = x[samples, np.maximum(feature, 0)] <= self.threshold[trees, node]
            step = np.where(goes_left, self.left[trees, node], self.right[trees, node])
            node = np.where(inner, step, node)
        return np.asarray(self.baseline + self.value[trees, node].sum(axis=1), dtype=np.float64)

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(
                f,
                feature=self.feature,
                threshold=self.threshold,
                left=self.left,
                right=self.right,
                value=self.value,
                baseline=np.array(self.baseline),
            )

    @classmethod
    def load(cls, path: Path, *, sha256: str) -> TreeEnsemble:
        """The ensemble at ``path``, whose bytes must have this ``sha256``."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the verifier's trees {path}: {exc}") from exc
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise ConfigurationError(
                f"{path} is not the tree model its card names (sha256 differs): "
                "reinstall fastapi-semcache"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    feature=data["feature"].astype(np.int32),
                    threshold=data["threshold"].astype(np.float64),
                    left=data["left"].astype(np.int32),
                    right=data["right"].astype(np.int32),
                    value=data["value"].astype(np.float64),
                    baseline=float(data["baseline"]),
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(f"cannot read the verifier's trees {path}: {exc}") from exc
