"""The demo's question set: groups of paraphrases, and the stream of requests made of them.

The groups (``data/demo_questions.json``) hold paraphrases that deserve one answer, and
near misses: questions worded like another group's that deserve a different one.
"""

from __future__ import annotations

import importlib.resources
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Group", "Question", "build_stream", "load_groups", "look_alikes"]


@dataclass(frozen=True, slots=True)
class Group:
    """Paraphrases of one question, which deserve the same answer."""

    id: str
    answer: str
    questions: tuple[str, ...]
    near_miss_of: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """One request of the stream."""

    text: str
    group: str


def load_groups() -> list[Group]:
    """The demo's question groups (package data)."""
    data = importlib.resources.files("semanticcache._cli").joinpath("data/demo_questions.json")
    document = json.loads(data.read_text(encoding="utf-8"))
    return [
        Group(g["id"], g["answer"], tuple(g["questions"]), g.get("near_miss_of"))
        for g in document["groups"]
    ]


def build_stream(groups: Sequence[Group], count: int, seed: int) -> list[Question]:
    """``count`` questions: every question of every group once in a seeded random order,
    then (past that) seeded reshuffles of them again (exact repeats)."""
    questions = [Question(q, g.id) for g in groups for q in g.questions]
    rng = random.Random(seed)  # noqa: S311 - a reproducible demo order, not a secret
    stream: list[Question] = []
    while len(stream) < count:
        batch = list(questions)
        rng.shuffle(batch)
        stream.extend(batch[: count - len(stream)])
    return stream


def look_alikes(groups: Sequence[Group]) -> dict[str, set[str]]:
    """Each group's look-alikes: the groups marked near misses of it, and the reverse."""
    found: dict[str, set[str]] = {g.id: set() for g in groups}
    for g in groups:
        if g.near_miss_of is not None:
            found[g.id].add(g.near_miss_of)
            found.setdefault(g.near_miss_of, set()).add(g.id)
    return found
