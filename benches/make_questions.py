"""Build benches/data/questions_384.npy: local-model embeddings of generated questions.

Each pair is one question as it would be stored and a rewording of it (another template
over the same slots), so a query vector lies near exactly one stored vector, as a
semantic hit does in use. Stored once (float16, a few MB); ``bench_plans.py`` reads it.

    python benches/make_questions.py [--pairs 2000]
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import numpy as np

from semanticcache._embedders.local import LocalEmbedder

OUT = Path(__file__).parent / "data" / "questions_384.npy"

_ASK = [
    "How do I {verb} {obj} in {tech}?",
    "What is the best way to {verb} {obj} with {tech}?",
    "Can you explain how to {verb} {obj} using {tech}?",
    "In {tech}, how can I {verb} {obj}?",
    "Show me how to {verb} {obj} in {tech}.",
    "I need to {verb} {obj} in {tech}; where do I start?",
    "Is there a simple way to {verb} {obj} in {tech}?",
    "Steps to {verb} {obj} with {tech}?",
]
_VERB = [
    "sort",
    "reverse",
    "deduplicate",
    "serialize",
    "parse",
    "merge",
    "split",
    "validate",
    "cache",
    "compress",
    "encrypt",
    "paginate",
    "index",
    "stream",
    "log",
    "profile",
    "benchmark",
    "test",
    "mock",
    "retry",
    "rate-limit",
    "schedule",
    "debounce",
    "resize",
]
_OBJ = [
    "a list of dictionaries",
    "a large CSV file",
    "JSON responses",
    "a linked list",
    "database rows",
    "user sessions",
    "HTTP requests",
    "log lines",
    "image uploads",
    "a binary tree",
    "environment variables",
    "configuration files",
    "timestamps",
    "API keys",
    "websocket messages",
    "background jobs",
    "SQL queries",
    "email addresses",
    "nested objects",
    "query parameters",
]
_TECH = [
    "Python",
    "Rust",
    "Go",
    "TypeScript",
    "Java",
    "PostgreSQL",
    "Redis",
    "FastAPI",
    "Django",
    "React",
    "Kubernetes",
    "Bash",
]


def pairs(n: int, seed: int = 14) -> list[tuple[str, str]]:
    """``n`` (stored, reworded) question pairs over distinct slot combinations."""
    rng = random.Random(seed)
    combos = list(itertools.product(_VERB, _OBJ, _TECH))
    rng.shuffle(combos)
    out = []
    for verb, obj, tech in combos[:n]:
        a, b = rng.sample(_ASK, 2)
        slots = {"verb": verb, "obj": obj, "tech": tech}
        out.append((a.format(**slots), b.format(**slots)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    args = parser.parse_args()
    questions = pairs(args.pairs)
    embedder = LocalEmbedder(batch_size=64)
    try:
        stored = embedder.embed_sync([q for q, _ in questions])
        reworded = embedder.embed_sync([r for _, r in questions])
    finally:
        embedder.close()
    data = np.asarray([stored, reworded], dtype=np.float16)  # (2, pairs, 384)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.save(OUT, data)
    print(f"{OUT}: {data.shape}")


if __name__ == "__main__":
    main()
