"""The tree ensemble of the verifier's wording model: numpy evaluation pinned to a
node-by-node walk, the export of scikit-learn's boosted trees, the packaged file."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semanticcache._verifier.card import load_card
from semanticcache._verifier.features import FEATURES, wording_features
from semanticcache._verifier.trees import TreeEnsemble
from semanticcache.errors import ConfigurationError

FEATURE_COUNT = 3


def walk(trees: TreeEnsemble, row: list[float]) -> float:
    """The reference: each tree walked node by node from its root."""
    total = trees.baseline
    for t in range(trees.feature.shape[0]):
        node = 0
        while trees.feature[t, node] >= 0:
            go_left = row[trees.feature[t, node]] <= trees.threshold[t, node]
            node = int(trees.left[t, node] if go_left else trees.right[t, node])
        total += float(trees.value[t, node])
    return total


@st.composite
def ensembles(draw: st.DrawFn) -> TreeEnsemble:
    """Random trees, nodes in pre-order (a child after its parent), padded alike."""
    count = draw(st.integers(1, 5))
    built = []
    for _ in range(count):
        nodes: list[list[float]] = []  # feature, threshold, left, right, value

        def grow(nodes: list[list[float]], depth: int) -> int:
            index = len(nodes)
            nodes.append([-1, 0.0, 0, 0, 0.0])
            if depth < 4 and draw(st.booleans()):
                feature = draw(st.integers(0, FEATURE_COUNT - 1))
                threshold = draw(st.floats(-2, 2, allow_nan=False))
                left = grow(nodes, depth + 1)
                right = grow(nodes, depth + 1)
                nodes[index] = [feature, threshold, left, right, 0.0]
            else:
                nodes[index][4] = draw(st.floats(-3, 3, allow_nan=False))
            return index

        grow(nodes, 0)
        built.append(nodes)
    width = max(len(n) for n in built)
    for nodes in built:
        nodes.extend([[-1, 0.0, 0, 0, 0.0]] * (width - len(nodes)))
    table = np.array(built, dtype=np.float64)
    return TreeEnsemble(
        feature=table[:, :, 0].astype(np.int32),
        threshold=table[:, :, 1],
        left=table[:, :, 2].astype(np.int32),
        right=table[:, :, 3].astype(np.int32),
        value=table[:, :, 4],
        baseline=draw(st.floats(-1, 1, allow_nan=False)),
    )


rows = st.lists(
    st.lists(st.floats(-3, 3, allow_nan=False), min_size=FEATURE_COUNT, max_size=FEATURE_COUNT),
    min_size=1,
    max_size=6,
)


@given(ensembles(), rows)
def test_numpy_evaluation_is_the_node_by_node_walk(
    trees: TreeEnsemble, batch: list[list[float]]
) -> None:
    got = trees.logits(batch)
    assert got.shape == (len(batch),)
    for score, row in zip(got, batch, strict=True):
        assert score == pytest.approx(walk(trees, row), abs=1e-9)


def test_a_tree_whose_child_comes_first_is_refused() -> None:
    loop = np.array([[0, -1]], dtype=np.int32)
    with pytest.raises(ValueError, match="later node"):
        TreeEnsemble(loop, np.zeros((1, 2)), np.array([[0, 0]], np.int32),
                     np.array([[1, 0]], np.int32), np.zeros((1, 2)), 0.0)  # fmt: skip
    with pytest.raises(ValueError, match="shape"):
        TreeEnsemble(loop, np.zeros((1, 3)), loop, loop, np.zeros((1, 2)), 0.0)
    trees = TreeEnsemble(np.array([[-1]], np.int32), np.zeros((1, 1)),
                         np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32),
                         np.full((1, 1), 0.25), 0.5)  # fmt: skip
    assert trees.logits([[1.0]]).tolist() == [0.75]
    with pytest.raises(ValueError, match="rows must have shape"):
        trees.logits([1.0, 2.0])


def test_scikit_learns_boosted_trees_export_to_the_same_scores(tmp_path: Path) -> None:
    from training.verifier.wording import export, train

    rng = np.random.default_rng(15)
    x = rng.uniform(0, 1, size=(3000, len(FEATURES)))
    y = (x[:, 0] + 0.3 * x[:, 5] - 0.2 * x[:, 10] + rng.normal(0, 0.2, 3000)) > 0.6
    model = train(x, y)
    trees = export(model)
    test = rng.uniform(-0.5, 1.5, size=(500, len(FEATURES)))
    np.testing.assert_allclose(trees.logits(test), model.decision_function(test), atol=1e-9)
    trees.save(tmp_path / "t.npz")
    digest = hashlib.sha256((tmp_path / "t.npz").read_bytes()).hexdigest()
    again = TreeEnsemble.load(tmp_path / "t.npz", sha256=digest)
    np.testing.assert_array_equal(again.logits(test), trees.logits(test))


def test_the_packaged_trees_are_checked_against_their_card(tmp_path: Path) -> None:
    card = load_card()
    trees = TreeEnsemble.load(card.wording_path, sha256=card.wording_sha256)
    assert trees.inputs <= len(FEATURES)
    copy = tmp_path / "trees.npz"
    shutil.copyfile(card.wording_path, copy)
    with copy.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigurationError, match="sha256 differs"):
        TreeEnsemble.load(copy, sha256=card.wording_sha256)
    with pytest.raises(ConfigurationError, match="cannot read"):
        TreeEnsemble.load(tmp_path / "missing.npz", sha256=card.wording_sha256)


WORDS = ["how", "do", "i", "reset", "my", "router", "what", "is", "the", "capital", "of",
         "france", "not", "2", "3", "paris", "rome", "to", "from", "best", "way"]  # fmt: skip
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=10).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(texts, texts, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_the_packaged_score_never_falls_as_the_similarity_rises(
    a: str, b: str, s: float, t: float
) -> None:
    # What makes the floor a safe stand-in for another embedder's similarity.
    card = load_card()
    trees = TreeEnsemble.load(card.wording_path, sha256=card.wording_sha256)
    low, high = sorted((s, t))
    scores = trees.logits([wording_features(a, b, low), wording_features(a, b, high)])
    assert scores[0] <= scores[1] + 1e-12
