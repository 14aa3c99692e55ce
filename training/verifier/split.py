"""Split labelled pairs into train / calibrate / test by connected component.

Two pairs that share a question (after casefold and whitespace collapse) are in one
component, and a component goes to one split whole, so no question text is on both sides
of a split. Components are shuffled with a fixed seed, then placed largest first, each in the split
that is furthest below its share of pairs and of positive pairs.

    python -m training.verifier.split \\
        --qqp /work/shared/evaldata/qqp_gptcache/dev.jsonl \\
        --paws /work/shared/evaldata/paws_wiki/dev.jsonl --out /work/train-out
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from training.verifier.common import DEFAULT_OUT, SPLITS, LabelledPair, load_jsonl, split_path

SEED: Final = 15
FRACTIONS: Final = (0.6, 0.2, 0.2)


def normalise(text: str) -> str:
    """The text as the split compares it: casefolded, whitespace collapsed."""
    return " ".join(text.casefold().split())


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def component_split(
    pairs: Sequence[LabelledPair],
    fractions: Sequence[float] = FRACTIONS,
    seed: int = SEED,
) -> dict[str, str]:
    """Pair id -> split name (``SPLITS``), whole components per split."""
    uf = UnionFind()
    for p in pairs:
        uf.union(normalise(p.a), normalise(p.b))
    components: dict[str, list[LabelledPair]] = {}
    for p in pairs:
        components.setdefault(uf.find(normalise(p.a)), []).append(p)
    groups = sorted(components.values(), key=lambda group: group[0].id)
    random.Random(seed).shuffle(groups)
    # Largest first (ties in shuffled order): the small ones then even out the shares.
    groups.sort(key=len, reverse=True)
    all_pairs = max(len(pairs), 1)
    all_positives = max(sum(p.label for p in pairs), 1)
    counts = [0] * len(SPLITS)
    positives = [0] * len(SPLITS)
    assignment: dict[str, str] = {}
    for group in groups:
        size, pos = len(group), sum(p.label for p in group)

        def error(i: int, size: int = size, pos: int = pos) -> float:
            # Squared distance of every split from its share of the pairs and of the
            # positives once this group is in split i (both as shares of the whole).
            total = sum(counts) + size
            total_pos = sum(positives) + pos
            err = 0.0
            for j in range(len(SPLITS)):
                c = counts[j] + (size if j == i else 0)
                q = positives[j] + (pos if j == i else 0)
                err += ((c - fractions[j] * total) / all_pairs) ** 2
                err += ((q - fractions[j] * total_pos) / all_positives) ** 2
            return err

        index = min(range(len(SPLITS)), key=error)
        counts[index] += size
        positives[index] += pos
        for p in group:
            assignment[p.id] = SPLITS[index]
    return assignment


def write_split(out: Path, dataset: str, pairs: Sequence[LabelledPair]) -> dict[str, object]:
    """Write the id lists of ``dataset``'s split; return its sizes."""
    assignment = component_split(pairs)
    sizes: dict[str, object] = {}
    for split in SPLITS:
        chosen = [p for p in pairs if assignment[p.id] == split]
        path = split_path(out, dataset, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(p.id + "\n" for p in chosen), encoding="utf-8")
        sizes[split] = {"pairs": len(chosen), "positives": sum(p.label for p in chosen)}
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qqp", type=Path, required=True)
    parser.add_argument("--paws", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = {
        "seed": SEED,
        "fractions": list(FRACTIONS),
        "qqp": write_split(args.out, "qqp", load_jsonl(args.qqp)),
        "paws": write_split(args.out, "paws", load_jsonl(args.paws)),
    }
    (args.out / "split" / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    print(json.dumps(sizes, indent=2))


if __name__ == "__main__":
    main()
