"""A sentence-transformers cross-encoder named by the user, in place of the packaged model.

It loads by name (from the Hugging Face hub, when the machine can reach it) or from a
folder, and runs on a worker thread of its own. Its scores are taken as probabilities
(sentence-transformers applies a sigmoid to one-label models), so its threshold is the
user's: ``SEMANTIC_CACHE_VERIFIER_THRESHOLD``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semanticcache._embedders._worker import COALESCE_MAX_TEXTS, BatchingWorker
from semanticcache._embedders.factory import extra_imports
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-huggingface", "SEMANTIC_CACHE_VERIFIER_MODEL"):
    from sentence_transformers import CrossEncoder

__all__ = ["SentenceTransformersScorer"]

Pair = tuple[str, str]


class SentenceTransformersScorer:
    """``sentence_transformers.CrossEncoder(model)`` as a pair scorer."""

    def __init__(self, model: str) -> None:
        try:
            self._model: Any = CrossEncoder(model, device="cpu")
        except Exception as exc:  # the library raises OSError, ValueError, hub errors...
            raise ConfigurationError(
                f"SEMANTIC_CACHE_VERIFIER_MODEL={model!r} cannot be loaded: {exc}"
            ) from exc
        self.name = model
        self._worker: BatchingWorker[Pair, float] = BatchingWorker(
            self._run, max_texts=COALESCE_MAX_TEXTS, thread_name="semcache-verifier"
        )

    def _run(self, pairs: list[Pair]) -> list[float]:
        try:
            scores = self._model.predict(pairs, show_progress_bar=False)
        except Exception as exc:
            raise EmbedderError(f"the verifier {self.name!r} failed: {exc}") from exc
        return [float(s) for s in scores]

    async def probabilities(
        self, pairs: Sequence[Pair], similarities: Sequence[float] | None
    ) -> list[float]:
        del similarities  # the model reads the texts alone
        if not pairs:
            return []
        return await self._worker.submit(list(pairs), self)

    def __repr__(self) -> str:
        return f"SentenceTransformersScorer({self.name!r})"
