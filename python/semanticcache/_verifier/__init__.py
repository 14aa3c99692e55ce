"""Stage 2: a pair classifier decides whether a stage-1 candidate wants the same answer.

Stage 1 (pgvector) returns the partition's nearest entries above the verifier's floor;
the verifier reads the lookup text beside each candidate's stored text and gives a
probability that one answer serves both, its card weighing the cross-encoder's score
with that of a model of the pair's wording and similarity. The first candidate at or
above the threshold is served. The thresholds come from the model card's table for
``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE`` (a separate one for a pair that shares most of its
words, where word order decides), or ``SEMANTIC_CACHE_VERIFIER_THRESHOLD`` is one for
every pair.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from semanticcache._embedders.base import BaseEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier.card import ModelCard, Thresholds, load_card
from semanticcache._verifier.features import wording_features
from semanticcache.errors import ConfigurationError, EmbedderError

__all__ = ["PairScorer", "Verifier", "load_verifier"]

Pair = tuple[str, str]


class PairScorer(Protocol):
    """A model that gives each ``(stored_text, lookup_text)`` a probability, reading the
    pair's stage-1 similarity too when its calibration uses it (``None``: the embedder
    is not the one it was calibrated with)."""

    name: str

    async def probabilities(
        self, pairs: Sequence[Pair], similarities: Sequence[float] | None
    ) -> list[float]: ...


class Verifier:
    """A :class:`PairScorer` with its stage-1 floor and its decision thresholds."""

    def __init__(
        self,
        scorer: PairScorer,
        *,
        floor: float,
        thresholds: Thresholds | float,
        reads_similarity: bool = False,
    ) -> None:
        self.scorer = scorer
        self.floor = floor
        if not isinstance(thresholds, Thresholds):
            thresholds = Thresholds.single(thresholds)
        self.thresholds = thresholds
        self.reads_similarity = reads_similarity
        """Whether the scorer was calibrated with this cache's embedder's similarities."""

    @property
    def name(self) -> str:
        return self.scorer.name

    async def probabilities(
        self, pairs: Sequence[Pair], similarities: Sequence[float]
    ) -> list[float]:
        """The probability of each pair, whose stage-1 similarity is in ``similarities``."""
        if len(similarities) != len(pairs):
            raise ValueError("one similarity per pair")
        return await self.scorer.probabilities(
            pairs, similarities if self.reads_similarity else None
        )

    def describe(self) -> str:
        """The thresholds, for a person."""
        t = self.thresholds
        if t.reordered_words is None or not t.split:
            return f"{t.threshold:.3f}"
        return (
            f"{t.threshold:.3f} ({t.reordered:.3f} with {100 * t.reordered_words:.0f} % "
            "of the words shared)"
        )

    def __repr__(self) -> str:
        return f"Verifier({self.name!r}, floor={self.floor}, threshold={self.describe()})"


class _PackagedScorer:
    """The packaged cross-encoder and wording model, their scores made a probability by
    their card. Each runs on a worker thread of its own."""

    def __init__(self) -> None:
        from semanticcache._embedders._worker import COALESCE_MAX_TEXTS, BatchingWorker
        from semanticcache._verifier.model import CrossEncoder
        from semanticcache._verifier.trees import TreeEnsemble

        self._model = CrossEncoder(_packaged_card())
        self.card = self._model.card
        self.name = self.card.name
        self._trees = TreeEnsemble.load(self.card.wording_path, sha256=self.card.wording_sha256)
        self._wording: BatchingWorker[tuple[str, str, float], float] = BatchingWorker(
            self.wording_sync, max_texts=COALESCE_MAX_TEXTS, thread_name="semcache-wording"
        )

    def wording_sync(self, items: Sequence[tuple[str, str, float]]) -> list[float]:
        """The wording model's score of each ``(stored, lookup, similarity)`` (blocking)."""
        try:
            rows = [wording_features(stored, lookup, s) for stored, lookup, s in items]
            return [float(x) for x in self._trees.logits(rows)] if rows else []
        except Exception as exc:  # a bug here must fail open like a model error
            raise EmbedderError(f"the verifier's wording model failed: {exc}") from exc

    async def probabilities(
        self, pairs: Sequence[Pair], similarities: Sequence[float] | None
    ) -> list[float]:
        if not pairs:
            return []
        # Another embedder's similarities mean something else: the floor, the least a
        # candidate has, stands in (the trees never score a lower similarity higher).
        if similarities is None:
            similarities = [self.card.floor] * len(pairs)
        items = [(a, b, s) for (a, b), s in zip(pairs, similarities, strict=True)]
        logits, wording = await asyncio.gather(
            self._model.logits(pairs), self._wording.submit(items, self)
        )
        return [self.card.probability(x, w) for x, w in zip(logits, wording, strict=True)]


# Models are loaded once per process and shared by every cache (they are thread-safe).
_loaded: dict[str, PairScorer] = {}
_loading = threading.Lock()


def _shared[S: PairScorer](key: str, load: Callable[[], S]) -> S:
    with _loading:
        scorer = _loaded.get(key)
        if scorer is None:
            scorer = _loaded[key] = load()
        return scorer  # type: ignore[return-value]


@functools.cache
def _packaged_card() -> ModelCard:
    return load_card()  # read once: every cache construction consults it


def _packaged_available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("onnxruntime", "tokenizers", "numpy")
    )


def load_verifier(settings: CacheSettings, embedder: BaseEmbedder) -> Verifier | None:
    """The verifier ``settings`` ask for with ``embedder``, or ``None`` when it is off.

    ``auto`` turns it on with the local embedder (whose packages it shares) or when
    ``verifier_model`` names a model; ``on`` requires it whatever the embedder.
    """
    mode = settings.verifier
    if mode == "off":
        return None
    card = _packaged_card()
    local = embedder.model_id == card.similarity_embedder and _packaged_available()
    if mode == "auto" and settings.verifier_model is None and not local:
        return None
    floor = settings.verifier_floor
    if floor is None:
        floor = card.floor
    scorer: PairScorer
    if settings.verifier_model is not None:
        from semanticcache._verifier.sentence_transformers import SentenceTransformersScorer

        if settings.verifier_threshold is None:
            raise ConfigurationError(
                "SEMANTIC_CACHE_VERIFIER_MODEL needs SEMANTIC_CACHE_VERIFIER_THRESHOLD "
                "(`semcache calibrate` measures one on your labelled pairs)"
            )
        name = settings.verifier_model
        scorer = _shared(name, lambda: SentenceTransformersScorer(name))
        return Verifier(scorer, floor=floor, thresholds=settings.verifier_threshold)
    packaged = _shared("", _PackagedScorer)
    reads = embedder.model_id == card.similarity_embedder
    if settings.verifier_threshold is not None:
        thresholds: Thresholds | float = settings.verifier_threshold
    else:
        thresholds = packaged.card.thresholds_for(settings.max_false_hit_rate)
    return Verifier(packaged, floor=floor, thresholds=thresholds, reads_similarity=reads)
