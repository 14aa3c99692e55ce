"""The decision on stage-1 candidates (:class:`semanticcache._judge.Judge`), with a scorer
whose probabilities the test sets: gate, agreement, rejection, threshold, order, failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from semanticcache._breaker import CircuitBreaker
from semanticcache._guard import Guard, Unavailable
from semanticcache._judge import Candidate, Judge
from semanticcache._settings import CacheSettings
from semanticcache._verifier import Verifier
from semanticcache._verifier.card import Thresholds


class ScriptedScorer:
    """Probabilities looked up by stored text; records every batch it was given."""

    name = "scripted"

    def __init__(self, by_text: dict[str, float], *, delay: float = 0.0) -> None:
        self.by_text = by_text
        self.delay = delay
        self.batches: list[list[tuple[str, str]]] = []
        self.similarities: list[list[float] | None] = []

    async def probabilities(
        self, pairs: Sequence[tuple[str, str]], similarities: Sequence[float] | None
    ) -> list[float]:
        self.batches.append(list(pairs))
        self.similarities.append(None if similarities is None else list(similarities))
        if self.delay:
            await asyncio.sleep(self.delay)
        return [self.by_text[stored] for stored, _ in pairs]


class BrokenScorer:
    name = "broken"

    async def probabilities(
        self, pairs: Sequence[tuple[str, str]], similarities: Sequence[float] | None
    ) -> list[float]:
        raise RuntimeError("model file truncated")


def judge(
    scorer: object | None,
    *,
    floor: float = 0.8,
    accept: float = 0.5,
    budget: float | None = None,
    **settings: object,
) -> Judge:
    verifier = (
        None if scorer is None else Verifier(scorer, floor=floor, thresholds=accept)  # type: ignore[arg-type]
    )
    guard = Guard("verify", CircuitBreaker("verifier", failures=3, cooldown=60.0), budget)
    return Judge(CacheSettings(**settings), verifier, guard)  # type: ignore[arg-type]


QUERY = "How do I reset my router?"


async def test_without_a_verifier_the_first_candidate_above_the_threshold_is_served() -> None:
    j = judge(None, threshold=0.9)
    assert j.gate == 0.9
    verdict = await j.choose(QUERY, [Candidate(0.95, "How can I reset my router?")])
    assert (verdict.served, verdict.reason, verdict.probability) == (0, "hit", None)
    assert (await j.choose(QUERY, [Candidate(0.89, "x")])).reason == "miss"


async def test_the_verifier_serves_the_first_candidate_it_accepts_in_similarity_order() -> None:
    scorer = ScriptedScorer({"first": 0.2, "second": 0.7, "third": 0.9})
    j = judge(scorer, floor=0.8, accept=0.5)
    assert j.gate == 0.8
    candidates = [Candidate(0.95, "first"), Candidate(0.9, "second"), Candidate(0.85, "third")]
    verdict = await j.choose(QUERY, candidates)
    assert (verdict.served, verdict.reason, verdict.probability) == (1, "hit", 0.7)
    # All candidates go to the model as one batch of (stored, lookup) pairs.
    assert scorer.batches == [[("first", QUERY), ("second", QUERY), ("third", QUERY)]]
    # A scorer calibrated with another embedder's similarities is not given these.
    assert scorer.similarities == [None]


async def test_a_scorer_calibrated_with_the_embedder_reads_each_candidates_similarity() -> None:
    scorer = ScriptedScorer({"near": 0.2, "far": 0.2, "unchecked": 0.9})
    verifier = Verifier(scorer, floor=0.8, thresholds=0.5, reads_similarity=True)
    guard = Guard("verify", CircuitBreaker("verifier", failures=3, cooldown=60.0), None)
    j = Judge(CacheSettings(), verifier, guard)
    candidates = [Candidate(0.97, "near"), Candidate(0.5, "below the gate"), Candidate(0.86, "far")]
    verdict = await j.choose(QUERY, candidates)
    assert verdict.reason == "unverified"
    # Only the pairs the model scores, each with its own candidate's similarity.
    assert scorer.batches == [[("near", QUERY), ("far", QUERY)]]
    assert scorer.similarities == [[0.97, 0.86]]
    with pytest.raises(ValueError, match="one similarity per pair"):
        await verifier.probabilities([("near", QUERY)], [])


async def test_a_candidate_sharing_the_lookups_words_needs_the_reordered_threshold() -> None:
    # The same words in another order (where order decides the answer) take the card's
    # stricter threshold; another wording takes the other one.
    query = "cheap flights from paris to rome in may"
    swapped = "cheap flights from rome to paris in may"
    reworded = "low-cost plane tickets paris to rome, may"
    scorer = ScriptedScorer({swapped: 0.9, reworded: 0.9})
    thresholds = Thresholds(0.85, 0.95, 0.75)
    verifier = Verifier(scorer, floor=0.8, thresholds=thresholds)
    guard = Guard("verify", CircuitBreaker("verifier", failures=3, cooldown=60.0), None)
    j = Judge(CacheSettings(agreement_check=False), verifier, guard)
    assert thresholds.for_pair(swapped, query) == 0.95
    assert thresholds.for_pair(reworded, query) == 0.85
    # A probability both thresholds agree on needs no counting of words.
    assert thresholds.serves(0.96, swapped, query)
    assert thresholds.serves(0.96, reworded, query)
    assert not thresholds.serves(0.8, swapped, query)
    assert not thresholds.serves(0.8, reworded, query)
    assert thresholds.serves(0.9, reworded, query)
    assert not thresholds.serves(0.9, swapped, query)
    refused = await j.choose(query, [Candidate(0.97, swapped)])
    assert (refused.served, refused.reason) == (None, "unverified")
    served = await j.choose(query, [Candidate(0.97, swapped), Candidate(0.9, reworded)])
    assert (served.served, served.reason, served.probability) == (1, "hit", 0.9)
    # One threshold (a user's, or a card's without the cut): every pair alike.
    single = Verifier(scorer, floor=0.8, thresholds=0.85)
    assert single.thresholds.for_pair(swapped, query) == 0.85
    assert single.thresholds.for_pair(reworded, query) == 0.85


async def test_no_accepted_candidate_is_unverified_with_the_best_probability() -> None:
    j = judge(ScriptedScorer({"a": 0.3, "b": 0.45}), accept=0.5)
    verdict = await j.choose(QUERY, [Candidate(0.9, "a"), Candidate(0.85, "b")])
    assert (verdict.served, verdict.reason, verdict.probability) == (None, "unverified", 0.45)


async def test_the_threshold_is_inclusive() -> None:
    j = judge(ScriptedScorer({"a": 0.5}), accept=0.5)
    assert (await j.choose(QUERY, [Candidate(0.9, "a")])).reason == "hit"


async def test_below_the_floor_the_model_never_runs() -> None:
    scorer = ScriptedScorer({"a": 1.0})
    j = judge(scorer, floor=0.8)
    assert (await j.choose(QUERY, [Candidate(0.79, "a")])).reason == "miss"
    assert scorer.batches == []


async def test_the_agreement_check_runs_before_the_model() -> None:
    scorer = ScriptedScorer({"Is 7 a prime number?": 1.0, "Is 9 a prime number?": 1.0})
    j = judge(scorer)
    # Numbers differ: the rule refuses it; the model is not asked.
    verdict = await j.choose("Is 9 a prime number?", [Candidate(0.97, "Is 7 a prime number?")])
    assert verdict.reason == "disagreement"
    assert scorer.batches == []
    both = [Candidate(0.97, "Is 7 a prime number?"), Candidate(0.96, "Is 9 a prime number?")]
    verdict = await j.choose("Is 9 a prime number?", both)
    assert (verdict.served, verdict.reason) == (1, "hit")
    assert scorer.batches == [[("Is 9 a prime number?", "Is 9 a prime number?")]]


async def test_rejection_threshold_removes_candidates_before_the_model() -> None:
    scorer = ScriptedScorer({"a": 0.9, "b": 0.9})
    j = judge(scorer, rejection_threshold=0.97, threshold=0.9)
    verdict = await j.choose(QUERY, [Candidate(0.96, "a"), Candidate(0.95, "b")])
    assert verdict.reason == "rejected"
    assert scorer.batches == []


async def test_a_candidate_without_its_text_is_never_served_by_the_verifier() -> None:
    j = judge(ScriptedScorer({}), agreement_check=False)
    assert (await j.choose(QUERY, [Candidate(0.99, None)])).reason == "unverified"


async def test_a_failing_model_is_unavailable_not_a_hit() -> None:
    j = judge(BrokenScorer())
    with pytest.raises(Unavailable) as info:
        await j.choose(QUERY, [Candidate(0.9, "How can I reset my router?")])
    assert info.value.reason == "verify_error"
    assert info.value.dependency == "verify"


async def test_a_slow_model_is_given_up_at_the_budget() -> None:
    j = judge(ScriptedScorer({"a": 0.9}, delay=5.0), budget=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable) as info:
        await j.choose(QUERY, [Candidate(0.9, "a")])
    assert info.value.reason == "verify_timeout"
    assert loop.time() - started < 2.0


def test_a_verifier_needs_a_guard() -> None:
    verifier = Verifier(ScriptedScorer({}), floor=0.5, thresholds=0.5)
    with pytest.raises(ValueError, match="guard"):
        Judge(CacheSettings(), verifier, None)
