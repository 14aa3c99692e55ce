"""The packaged pair classifier: a MiniLM-L6 cross-encoder (int8 ONNX) on ONNX Runtime.

It reads ``[CLS] stored [SEP] lookup [SEP]`` (truncated to the card's window, longest
text first) and returns one logit per pair; :class:`~semanticcache._verifier.card.ModelCard`
turns the logit into a probability. Runs on a worker thread of its own, never on the event
loop; concurrent calls are merged into one batch. No torch, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from semanticcache._embedders._worker import COALESCE_MAX_TEXTS, BatchingWorker
from semanticcache._embedders.base import sendable_text
from semanticcache._embedders.factory import extra_imports
from semanticcache._verifier.card import ModelCard
from semanticcache.errors import EmbedderError

with extra_imports("embed-local", "The verifier"):
    import numpy as np

    from semanticcache._embedders.local import build_tokenizer, load_onnx

__all__ = ["CrossEncoder", "Pair"]

Pair = tuple[str, str]
"""``(stored_text, lookup_text)``."""

# Enough characters for the window of any ordinary text; bounds tokenizing cost.
_MAX_CHARS: Final = 4_000


class CrossEncoder:
    """The card's ONNX model; :meth:`logits` scores pairs on the model's worker thread.

    Construction loads and checks the model (blocking, about 0.3 s: build it at start-up).
    """

    def __init__(self, card: ModelCard, *, threads: int | None = None) -> None:
        self.card = card
        self._session = load_onnx(
            card.model_path,
            sha256=card.sha256,
            threads=threads,
            what="the verifier",
            expected=f"the model its card {card.name} names",
            fix="reinstall fastapi-semcache",
        )
        self._tokenizer = build_tokenizer(card.max_tokens)
        self._tokenizer.no_padding()  # every pair runs alone (see logits_sync)
        self._worker: BatchingWorker[Pair, float] = BatchingWorker(
            self.logits_sync, max_texts=COALESCE_MAX_TEXTS, thread_name="semcache-verifier"
        )
        # The first run allocates and plans; pay for it here rather than on a request.
        self.logits_sync([("warm up", "warm up")])

    async def logits(self, pairs: Sequence[Pair]) -> list[float]:
        """One logit per ``(stored_text, lookup_text)``, computed on the worker thread."""
        if not pairs:
            return []
        return await self._worker.submit(list(pairs), self)

    def logits_sync(self, pairs: Sequence[Pair]) -> list[float]:
        """Like :meth:`logits`, on the calling thread (blocking: not for the event loop)."""
        if not pairs:
            return []
        texts = [(sendable_text(a[:_MAX_CHARS]), sendable_text(b[:_MAX_CHARS])) for a, b in pairs]
        out: list[float] = []
        try:
            # One pair per run: the int8 model quantizes its activations with one scale
            # per tensor, so a pair's score would depend on the others in its batch.
            for encoding in self._tokenizer.encode_batch(texts):
                ids = np.array([encoding.ids], dtype=np.int64)
                feed = {
                    "input_ids": ids,
                    "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
                }
                (logits,) = self._session.run(["logits"], feed)
                out.append(float(logits[0, 0]))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(f"the verifier failed: {exc}") from exc
        return out

    def __repr__(self) -> str:
        return f"CrossEncoder({self.card.name!r})"
