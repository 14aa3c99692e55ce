"""Stage 2: a pair classifier decides whether a stage-1 candidate wants the same answer.

Stage 1 (pgvector) returns the partition's nearest entries above the verifier's floor;
the verifier reads the lookup text beside each candidate's stored text and gives a
probability that one answer serves both. The first candidate at or above the threshold
is served. The thresholds come from the model card's table for
``SEMANTIC_CACHE_MAX_FALSE_HIT_RATE`` (a stricter one for a pair that shares most of its
words, where word order decides), or ``SEMANTIC_CACHE_VERIFIER_THRESHOLD`` is one for
every pair.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from semanticcache._embedders.base import BaseEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier.card import PACKAGED_CARD, Thresholds, load_card
from semanticcache.errors import ConfigurationError

__all__ = ["PairScorer", "Verifier", "load_verifier"]

Pair = tuple[str, str]

# The packaged model's card was fit with this embedder's similarities (its floor).
_LOCAL_MODEL_ID = "all-MiniLM-L6-v2-int8"


class PairScorer(Protocol):
    """A model that gives each ``(stored_text, lookup_text)`` a probability."""

    name: str

    async def probabilities(self, pairs: Sequence[Pair]) -> list[float]: ...


class Verifier:
    """A :class:`PairScorer` with its stage-1 floor and its decision thresholds."""

    def __init__(self, scorer: PairScorer, *, floor: float, thresholds: Thresholds | float) -> None:
        self.scorer = scorer
        self.floor = floor
        if not isinstance(thresholds, Thresholds):
            thresholds = Thresholds.single(thresholds)
        self.thresholds = thresholds

    @property
    def name(self) -> str:
        return self.scorer.name

    async def probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        return await self.scorer.probabilities(pairs)

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
    """The packaged cross-encoder, its logits mapped to probabilities by its card."""

    def __init__(self) -> None:
        from semanticcache._verifier.model import CrossEncoder

        self._model = CrossEncoder(load_card())
        self.card = self._model.card
        self.name = self.card.name

    async def probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        return [self.card.probability(x) for x in await self._model.logits(pairs)]


# Models are loaded once per process and shared by every cache (they are thread-safe).
_loaded: dict[str, PairScorer] = {}
_loading = threading.Lock()


def _shared[S: PairScorer](key: str, load: Callable[[], S]) -> S:
    with _loading:
        scorer = _loaded.get(key)
        if scorer is None:
            scorer = _loaded[key] = load()
        return scorer  # type: ignore[return-value]


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
    local = embedder.model_id == _LOCAL_MODEL_ID and _packaged_available()
    if mode == "auto" and settings.verifier_model is None and not local:
        return None
    floor = settings.verifier_floor
    if floor is None:
        floor = load_card(PACKAGED_CARD).floor
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
    if settings.verifier_threshold is not None:
        return Verifier(packaged, floor=floor, thresholds=settings.verifier_threshold)
    thresholds = packaged.card.thresholds_for(settings.max_false_hit_rate)
    return Verifier(packaged, floor=floor, thresholds=thresholds)
