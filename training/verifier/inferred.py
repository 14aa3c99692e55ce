"""Pairs that labelled pairs imply by transitivity: more training pairs from the same split."""

from __future__ import annotations

import random
from collections.abc import Sequence

from training.verifier.common import LabelledPair
from training.verifier.split import UnionFind, normalise


def inferred_pairs(pairs: Sequence[LabelledPair], limit: int, seed: int) -> list[LabelledPair]:
    """Up to ``limit`` pairs that ``pairs`` imply but do not hold, by transitivity.

    Same-answer pairs join their questions into groups: two questions of one group want the
    same answer, and a labelled different-answer pair between two groups makes every
    question of one different from every question of the other. A group that holds a
    different-answer pair within itself contradicts itself and implies nothing. Each group
    gives at most three same-answer pairs per question, so the largest groups do not crowd
    out the rest; the sample is seeded.
    """
    groups_of = UnionFind()
    find = groups_of.find
    text: dict[str, str] = {}
    for p in pairs:
        for t in (p.a, p.b):
            text.setdefault(normalise(t), t)
        if p.label:
            groups_of.union(normalise(p.a), normalise(p.b))
    groups: dict[str, list[str]] = {}
    for key in text:
        groups.setdefault(find(key), []).append(key)
    labelled = {frozenset((normalise(p.a), normalise(p.b))) for p in pairs}
    broken = {
        find(normalise(p.a))
        for p in pairs
        if not p.label and find(normalise(p.a)) == find(normalise(p.b))
    }
    rng = random.Random(seed)
    found: list[LabelledPair] = []
    for root, members in groups.items():
        if root in broken or len(members) < 3:
            continue
        candidates = [
            (a, b)
            for i, a in enumerate(members)
            for b in members[i + 1 :]
            if frozenset((a, b)) not in labelled
        ]
        for a, b in rng.sample(candidates, min(len(candidates), 3 * len(members))):
            found.append(LabelledPair(f"inferred:{len(found)}", text[a], text[b], True))
    apart: set[frozenset[str]] = set()
    for p in pairs:
        ga, gb = find(normalise(p.a)), find(normalise(p.b))
        if not p.label and ga != gb and ga not in broken and gb not in broken:
            apart.add(frozenset((ga, gb)))
    for pair in sorted(apart, key=sorted):
        ga, gb = sorted(pair)
        for a in groups[ga]:
            for b in groups[gb]:
                if frozenset((a, b)) not in labelled:
                    found.append(LabelledPair(f"inferred:{len(found)}", text[a], text[b], False))
    rng.shuffle(found)
    return found[:limit]
