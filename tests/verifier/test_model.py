"""The packaged verifier model and its card: integrity, scoring, batching, off the loop."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from semanticcache._verifier.card import PACKAGED_CARD, ModelCard, Thresholds, load_card
from semanticcache._verifier.model import CrossEncoder
from semanticcache.errors import ConfigurationError


@pytest.fixture(scope="module")
def model() -> CrossEncoder:
    return CrossEncoder(load_card())


def test_the_packaged_card_describes_the_packaged_file() -> None:
    card = load_card()
    assert card.model_path.is_file()
    assert card.max_tokens == 128
    rates = [rate for rate, _, _ in card.table]
    assert rates == sorted(rates)
    # A lower false-hit rate never needs a lower probability, of either kind.
    for kind in (1, 2):
        thresholds = [row[kind] for row in card.table]
        assert thresholds == sorted(thresholds, reverse=True)
    assert 0.0 <= card.floor < 1.0
    assert 0.0 < card.reordered_words <= 2.0


def test_probability_is_the_cards_logistic_of_both_scores() -> None:
    card = load_card()
    a, c, b = card.platt
    # A higher logit, or a higher wording score, means "same answer".
    assert a > 0
    assert c > 0
    assert card.similarity_embedder == "all-MiniLM-L6-v2-int8"
    assert card.probability(-(b + c * 0.5) / a, 0.5) == pytest.approx(0.5)
    assert card.probability(1e6, 0.5) == 1.0
    assert card.probability(-1e6, 0.5) == 0.0
    assert card.probability(1.0, 0.5) > card.probability(0.0, 0.5)
    assert card.probability(1.0, 1.0) > card.probability(1.0, 0.5)


def test_thresholds_for_takes_the_strictest_row_within_the_target() -> None:
    table = ((0.005, 0.95, 0.97), (0.01, 0.9, 0.93))
    card = ModelCard("t", Path("x"), "", 128, (1.0, 0.0, 0.0), Path("w"), "", "e", 0.5, table, 0.75)
    assert card.thresholds_for(0.01) == Thresholds(0.9, 0.93, 0.75)
    assert card.thresholds_for(0.0099) == Thresholds(0.95, 0.97, 0.75)
    assert card.thresholds_for(0.5) == Thresholds(0.9, 0.93, 0.75)
    with pytest.raises(ConfigurationError, match=r"down to a false-hit rate of 0\.005"):
        card.thresholds_for(0.001)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("platt"), "platt"),
        (lambda c: c.update(platt=[1.0, 0.0]), "platt"),
        (lambda c: c["platt"].pop("wording"), "wording"),
        (lambda c: c["platt"].update(intercept=None), "platt intercept"),
        (lambda c: c.pop("similarity_embedder"), "similarity_embedder"),
        (lambda c: c.pop("wording_model"), "wording_model"),
        (lambda c: c.pop("wording_sha256"), "wording_sha256"),
        (lambda c: c.update(table=[]), "non-empty"),
        (lambda c: c.update(floor="high"), "finite number"),
        (lambda c: c.pop("reordered_words"), "reordered_words"),
        (
            lambda c: c.update(table=[{"max_false_hit_rate": 0.01, "threshold": 0.5}]),
            "reordered_threshold",
        ),
        (
            lambda c: c.update(
                table=[
                    {"max_false_hit_rate": 0.02, "threshold": 0.5, "reordered_threshold": 0.6},
                    {"max_false_hit_rate": 0.01, "threshold": 0.6, "reordered_threshold": 0.7},
                ]
            ),
            "ascending",
        ),
    ],
)
def test_a_malformed_card_is_a_configuration_error(
    tmp_path: Path, change: object, message: str
) -> None:
    raw = json.loads(PACKAGED_CARD.read_text())
    change(raw)  # type: ignore[operator]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigurationError, match=message):
        load_card(path)


def test_a_model_file_that_is_not_the_cards_is_refused(tmp_path: Path) -> None:
    card = load_card()
    copy = tmp_path / card.model_path.name
    shutil.copyfile(card.model_path, copy)
    with copy.open("ab") as f:
        f.write(b"\0")
    raw = json.loads(PACKAGED_CARD.read_text())
    (tmp_path / "card.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigurationError, match="is not the model its card"):
        CrossEncoder(load_card(tmp_path / "card.json"))


def test_same_question_outscores_a_different_one(model: CrossEncoder) -> None:
    same, other = model.logits_sync(
        [
            ("What are the benefits of green tea?", "What are the health benefits of green tea?"),
            ("What are the side effects of ibuprofen?", "What are the side effects of aspirin?"),
        ]
    )
    assert same > other


async def test_concurrent_calls_get_their_own_scores_from_one_worker_thread(
    model: CrossEncoder,
) -> None:
    pairs = [(f"How do I cook {food}?", f"What is the way to cook {food}?") for food in
             ("rice", "pasta", "eggs", "beans", "quinoa", "lentils", "tofu", "salmon")]  # fmt: skip
    expected = model.logits_sync(pairs)
    seen: list[str] = []
    original = model._session.run

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(threading.current_thread().name)
        return original(*args, **kwargs)

    model._session.run = recording
    try:
        results = await asyncio.gather(*(model.logits([p]) for p in pairs))
    finally:
        model._session.run = original
    for (got,), want in zip(results, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    assert seen
    assert all(name.startswith("semcache-verifier") for name in seen)


def test_long_texts_are_cut_to_the_window_and_hostile_text_scores(model: CrossEncoder) -> None:
    long = "why " * 5000
    lone_surrogate = "caf\ud800e"
    scores = model.logits_sync([(long, long), (lone_surrogate, "cafe"), ("", "")])
    assert len(scores) == 3
    assert all(isinstance(s, float) for s in scores)


async def test_an_empty_batch_costs_nothing(model: CrossEncoder) -> None:
    assert await model.logits([]) == []
    assert model.logits_sync([]) == []
