"""Stage 2 in SemanticCache on real Postgres: when it is on, what it serves and refuses,
that ``judge_pairs`` makes the lookup's decision, and how it is configured."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from semanticcache import HashingEmbedder, SemanticCache
from semanticcache._embedders.local import LocalEmbedder
from semanticcache._settings import CacheSettings
from semanticcache._verifier.card import load_card
from semanticcache.calibration import judge_pairs
from semanticcache.errors import ConfigurationError

# (stored, lookup): paraphrases, near misses and unrelated questions, written for this test.
PAIRS = [
    ("How do I reset my router?", "How can I reset my wifi router?"),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("What is the best way to learn Python?", "How should I learn Python?"),
    ("What are the benefits of green tea?", "What are the health benefits of green tea?"),
    ("How can I lose weight fast?", "What is the fastest way to lose weight?"),
    ("Why is the sky blue?", "What makes the sky look blue?"),
    ("How do I change a flat tire?", "How do you change a flat tyre?"),
    ("What are the side effects of ibuprofen?", "What are the side effects of aspirin?"),
    ("Flights from Paris to Rome", "Flights from Rome to Paris"),
    ("What time does the store open?", "What time does the store close?"),
    ("How do I boil an egg?", "How long should I boil an egg?"),
    ("What is machine learning?", "What is deep learning?"),
    ("How do I bake bread at home?", "What is a good recipe for homemade bread?"),
    ("What is the tallest mountain in the world?", "Which mountain is the highest on earth?"),
    ("How do I learn to play guitar?", "How do I learn to play piano?"),
    ("Is coffee bad for your heart?", "Does coffee harm the heart?"),
]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


def settings(pg_uri: str, **kwargs: object) -> CacheSettings:
    return CacheSettings(pg_uri=pg_uri, **kwargs)  # type: ignore[arg-type]


def test_auto_is_on_with_the_local_embedder_at_the_tables_threshold(
    pg_uri: str, local: LocalEmbedder
) -> None:
    cache = SemanticCache(embedder=local, settings=settings(pg_uri))
    card = load_card()
    assert cache.verifier is not None
    assert cache.verifier.thresholds == card.thresholds_for(0.01)
    assert cache.verifier.floor == card.floor
    # The card was calibrated with this embedder's similarities: the verifier reads them.
    assert cache.verifier.reads_similarity
    strict = SemanticCache(embedder=local, settings=settings(pg_uri, max_false_hit_rate=0.005))
    assert strict.verifier is not None
    assert strict.verifier.thresholds == card.thresholds_for(0.005)
    # One model per process, shared by every cache.
    assert strict.verifier.scorer is cache.verifier.scorer


def test_auto_is_off_with_another_embedder_and_on_asks_for_it(pg_uri: str) -> None:
    assert SemanticCache(embedder=HashingEmbedder(), settings=settings(pg_uri)).verifier is None
    on = SemanticCache(embedder=HashingEmbedder(), settings=settings(pg_uri, verifier="on"))
    assert on.verifier is not None
    # Another embedder's similarities mean something else: the card's floor stands in.
    assert not on.verifier.reads_similarity
    off = SemanticCache(embedder=HashingEmbedder(), settings=settings(pg_uri, verifier="off"))
    assert off.verifier is None


def test_bad_verifier_settings_are_start_up_errors(pg_uri: str, local: LocalEmbedder) -> None:
    with pytest.raises(ConfigurationError, match="calibrated down to"):
        SemanticCache(embedder=local, settings=settings(pg_uri, max_false_hit_rate=1e-9))
    with pytest.raises(ConfigurationError, match="SEMANTIC_CACHE_VERIFIER_THRESHOLD"):
        SemanticCache(embedder=local, settings=settings(pg_uri, verifier_model="some/model"))
    with pytest.raises(ConfigurationError, match="SEMANTIC_CACHE_VERIFIER"):
        CacheSettings(verifier="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SEMANTIC_CACHE_MAX_FALSE_HIT_RATE"):
        CacheSettings(max_false_hit_rate=0.0)


def test_the_environment_configures_it() -> None:
    parsed = CacheSettings.from_env(
        {
            "SEMANTIC_CACHE_VERIFIER": "OFF",
            "SEMANTIC_CACHE_MAX_FALSE_HIT_RATE": "0.02",
            "SEMANTIC_CACHE_VERIFIER_THRESHOLD": "0.7",
            "SEMANTIC_CACHE_VERIFIER_FLOOR": "0.5",
        }
    )
    assert parsed.verifier == "off"
    assert (parsed.max_false_hit_rate, parsed.verifier_threshold) == (0.02, 0.7)
    assert parsed.verifier_floor == 0.5


async def test_judge_pairs_makes_the_lookups_decision(pg_uri: str, local: LocalEmbedder) -> None:
    # A threshold in the middle of this sample's probabilities, so both verdicts occur.
    config = settings(pg_uri, verifier_threshold=0.5)
    probe = await judge_pairs(PAIRS, settings=config, embedder=local)
    scored = sorted(j.probability for j in probe if j.probability is not None)
    assert len(scored) >= 8
    middle = (scored[len(scored) // 2 - 1] + scored[len(scored) // 2]) / 2
    config = settings(pg_uri, verifier_threshold=middle)
    judged = await judge_pairs(PAIRS, settings=config, embedder=local)
    assert {j.reason for j in judged} >= {"hit", "unverified"}
    scope = "verifier-" + secrets.token_hex(4)
    async with SemanticCache(embedder=local, settings=config) as cache:
        for index, ((stored, lookup), judgement) in enumerate(zip(PAIRS, judged, strict=True)):
            partition = f"{scope}/{index}".encode()
            await cache.put(stored, b"answer", partition=partition, raise_errors=True)
            result = await cache.lookup(lookup, partition=partition)
            assert result.reason == judgement.reason, (stored, lookup)
            assert (result.hit is not None) == judgement.served
            if judgement.probability is not None:
                assert result.probability == pytest.approx(judgement.probability, abs=1e-6)
            # Below the gate the search returns no candidate, only the nearest similarity.
            assert result.nearest_similarity == pytest.approx(judgement.similarity, abs=1e-4)


async def test_a_refused_candidate_is_unverified_and_a_lower_threshold_serves_it(
    pg_uri: str, local: LocalEmbedder
) -> None:
    stored, lookup = "How do I reset my router?", "How can I reset my wifi router?"
    (judgement,) = await judge_pairs([(stored, lookup)], settings=settings(pg_uri), embedder=local)
    assert judgement.probability is not None
    p = judgement.probability
    for threshold, reason in ((min(1.0, p + 0.01), "unverified"), (max(1e-6, p - 0.01), "hit")):
        config = settings(pg_uri, verifier_threshold=threshold)
        async with SemanticCache(embedder=local, settings=config) as cache:
            partition = secrets.token_bytes(8)
            await cache.put(stored, b"steps", partition=partition, raise_errors=True)
            result = await cache.lookup(lookup, partition=partition)
            assert result.reason == reason
            assert result.probability == pytest.approx(p, abs=1e-6)
            assert (result.hit is not None) == (reason == "hit")
            # An exact repeat never asks the model.
            exact = await cache.lookup(stored, partition=partition)
            assert exact.hit is not None
            assert exact.hit.match == "exact"
            assert exact.probability is None


class BrokenTrees:
    def logits(self, rows: object) -> object:
        raise RuntimeError("trees truncated")


async def test_a_failing_wording_model_is_a_miss_not_an_error(
    pg_uri: str, local: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, lookup = "How do I reset my router?", "How can I reset my wifi router?"
    async with SemanticCache(embedder=local, settings=settings(pg_uri)) as cache:
        assert cache.verifier is not None
        monkeypatch.setattr(cache.verifier.scorer, "_trees", BrokenTrees())
        partition = secrets.token_bytes(8)
        await cache.put(stored, b"steps", partition=partition, raise_errors=True)
        result = await cache.lookup(lookup, partition=partition)
        assert result.hit is None
        assert result.reason == "verify_error"


async def test_off_serves_on_similarity_alone(pg_uri: str, local: LocalEmbedder) -> None:
    stored, lookup = "Flights from Paris to Rome", "Flights from Rome to Paris"
    config = settings(pg_uri, verifier="off", threshold=0.5, agreement_check=False)
    async with SemanticCache(embedder=local, settings=config) as cache:
        assert cache.verifier is None
        partition = secrets.token_bytes(8)
        await cache.put(stored, b"PAR-ROM", partition=partition, raise_errors=True)
        result = await cache.lookup(lookup, partition=partition)
        assert result.hit is not None
        assert result.hit.response == b"PAR-ROM"
        assert result.probability is None


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ("ab", "a sequence of"),
        ([("a",)], "pair 0 is not"),
        ([("a", "b"), ("a", 1)], "pair 1 holds a non-string"),
    ],
)
async def test_judge_pairs_refuses_what_is_not_text_pairs(pairs: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await judge_pairs(pairs, settings=CacheSettings(), embedder=HashingEmbedder())  # type: ignore[arg-type]
