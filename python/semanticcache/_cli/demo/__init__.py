"""``semcache demo``: the product's main job on embedded defaults, no key, no network.

An embedded Postgres with pgvector (or ``--pg-uri``), the offline local embedder, and a
stand-in LLM endpoint (:mod:`.llm`) behind
:class:`~semanticcache.SemanticCacheMiddleware`, served by uvicorn on
loopback. An HTTP client sends a stream of paraphrased and distinct questions
(:mod:`.questions`) and a table (:mod:`.table`) shows each one's outcome, then a summary
(:mod:`.report`): hit rate, how stage 2 decided (paraphrases served, near misses
refused), false hits, latency of hits and misses, upstream calls saved.
This module holds the command's arguments; :mod:`.runner` runs it.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from semanticcache._cli._common import add_postgres_arguments
from semanticcache._cli.demo.llm import StandInLLM, stand_in_latency_ms
from semanticcache._cli.demo.questions import Group, Question, build_stream, load_groups
from semanticcache._cli.demo.report import Decision, Outcome, summary
from semanticcache._cli.demo.runner import RECOMMENDED_THRESHOLD, THRESHOLD_ENV, run

__all__ = [
    "RECOMMENDED_THRESHOLD",
    "Decision",
    "Group",
    "Outcome",
    "Question",
    "StandInLLM",
    "add_parser",
    "build_stream",
    "load_groups",
    "run",
    "stand_in_latency_ms",
    "summary",
]

DEFAULT_LATENCY_MS: Final = (300, 800)
DEFAULT_SEED: Final = 7


def _latency(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        bounds = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a latency: {text!r} (accepted: MS or MIN-MAX in milliseconds, e.g. 300-800)"
        ) from None
    if not 0 <= bounds[0] <= bounds[1] <= 60_000:
        raise argparse.ArgumentTypeError(
            f"latency must be 0 <= MIN <= MAX <= 60000 ms, not {text!r}"
        )
    return bounds


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"--count must be in 1..10000, not {text!r}")
    return int(text)


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--threshold must be in (0, 1], not {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Register ``semcache demo``."""
    parser = commands.add_parser(
        "demo",
        help="the cache in front of a stand-in LLM endpoint, on embedded defaults",
        description="Start the embedded stack (Postgres with pgvector, the offline local "
        "embedder) and a stand-in OpenAI-compatible LLM endpoint behind "
        "SemanticCacheMiddleware, send it a stream of paraphrased and distinct questions, "
        "and show what the cache answered. Uses --pg-uri or SEMANTIC_CACHE_PG_URI when "
        "given, else the embedded development Postgres (started and stopped if it was "
        "not running). No API key, no network.",
    )
    add_postgres_arguments(parser)
    parser.add_argument(
        "--count",
        type=_count,
        default=None,
        help="questions to send (default: each question of the sample once)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency,
        default=DEFAULT_LATENCY_MS,
        metavar="MIN-MAX",
        help="the stand-in LLM's answer time (default 300-800, seeded per question)",
    )
    parser.add_argument(
        "--no-verifier",
        action="store_true",
        help="turn stage 2's verifier off: similarity alone decides (as "
        "SEMANTIC_CACHE_VERIFIER=off does)",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help=f"with the verifier off, the similarity of a semantic hit (default: "
        f"${THRESHOLD_ENV}, else {RECOMMENDED_THRESHOLD}, docs/BENCHMARKS.md's value for "
        "the local embedder)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="order of questions and latencies (7)"
    )
    parser.add_argument(
        "--no-live", action="store_true", help="plain lines instead of the live table"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's entries (default: purge its scope)"
    )
    parser.set_defaults(run=run)
