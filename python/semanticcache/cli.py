"""The ``semcache`` command (also ``python -m semanticcache``).

``semcache demo``: a first round trip through :class:`~semanticcache.SemanticCache`
(store, exact hit, semantic hit, miss) against ``SEMANTIC_CACHE_PG_URI`` or, when that is
unset, an embedded development Postgres started for the occasion and stopped after.

This module is the edge: it reads the environment through
:meth:`~semanticcache.settings.CacheSettings.from_env` (and ``XDG_CACHE_HOME`` for the
embedded data folder).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg.conninfo import conninfo_to_dict

from semanticcache.cache import SemanticCache
from semanticcache.embedders.hashing import HashingEmbedder
from semanticcache.errors import ConfigurationError, EmbeddedPostgresError, SemanticCacheError
from semanticcache.settings import CacheSettings, default_embedded_data_dir

__all__ = ["main"]

PG_URI_ENV = "SEMANTIC_CACHE_PG_URI"

_DEMO_PROMPT = "What is the capital of France?"
_DEMO_REWORDED = "what is the capital of France, please"
_DEMO_UNRELATED = "How do I bake sourdough bread?"
_DEMO_RESPONSE = b'{"answer": "Paris is the capital of France."}'
# The hashing embedder scores a light rewording around 0.92 and unrelated text far lower.
_DEMO_THRESHOLD = 0.9


class _Steps:
    """Numbered progress lines with the time each step took."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._n = 0

    def __call__(self, message: str, started: float) -> None:
        self._n += 1
        ms = (time.perf_counter() - started) * 1000
        print(f"{self._n}. {message}  [{ms:.1f} ms]", file=self._out, flush=True)


def _describe(uri: str) -> str:
    """host:port/dbname of a libpq URI, without user or password."""
    try:
        info = conninfo_to_dict(uri)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"{PG_URI_ENV} is not a valid libpq URI: {exc}") from None
    host = str(info.get("host") or "localhost")
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


async def _round_trip(pg_uri: str, threshold: float, step: _Steps) -> None:
    partition = hashlib.blake2b(b"semcache demo", digest_size=32).digest()
    started = time.perf_counter()
    cache = SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(), threshold=threshold)
    async with cache:
        step(
            f"cache ready: table {cache.table}, {cache.embedder!r} "
            f"(not a semantic model), threshold {threshold}",
            started,
        )
        started = time.perf_counter()
        entry_id = await cache.put(_DEMO_PROMPT, _DEMO_RESPONSE, partition=partition)
        step(
            f"put    {_DEMO_PROMPT!r} -> {len(_DEMO_RESPONSE)}-byte response (entry {entry_id})",
            started,
        )
        for text in (_DEMO_PROMPT, _DEMO_REWORDED, _DEMO_UNRELATED):
            started = time.perf_counter()
            hit = await cache.get(text, partition=partition)
            if hit is None:
                outcome = "MISS"
            else:
                outcome = (
                    f"HIT {hit.match}, similarity {hit.similarity:.3f}, "
                    f"response {hit.response.decode('utf-8', 'replace')}"
                )
            step(f"get    {text!r} -> {outcome}", started)


def _demo(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    # Imported here: the embedded launcher is development-only, POSIX-only machinery.
    try:
        from semanticcache.storage.embedded import EmbeddedPostgres
    except ImportError as exc:  # fcntl / pwd: not on Windows
        raise EmbeddedPostgresError(
            f"the embedded Postgres is not available on this platform ({exc}); "
            f"set {PG_URI_ENV} to a Postgres server with pgvector"
        ) from exc

    settings = CacheSettings.from_env(environ)
    step = _Steps(out)
    pg_uri = settings.pg_uri
    embedded: EmbeddedPostgres | None = None
    try:
        started = time.perf_counter()
        if pg_uri:
            step(f"postgres: using {PG_URI_ENV} ({_describe(pg_uri)})", started)
        else:
            data_dir = (
                args.data_dir or settings.embedded_data_dir or default_embedded_data_dir(environ)
            )
            print(
                f"WARNING: development mode: {PG_URI_ENV} is unset, so an embedded Postgres "
                f"(trust authentication, loopback only) runs under {data_dir}. "
                f"Never use it in production: set {PG_URI_ENV}.",
                file=sys.stderr,
                flush=True,
            )
            embedded = EmbeddedPostgres(data_dir)
            pg_uri = embedded.start()
            verb = "started" if embedded.started_here else "reused the running"
            step(f"postgres: {verb} embedded Postgres at {_describe(pg_uri)}", started)
        asyncio.run(_round_trip(pg_uri, args.threshold, step))
    finally:
        if embedded is not None:
            owned = embedded.started_here
            started = time.perf_counter()
            embedded.stop()
            if owned:
                step("postgres: stopped the embedded Postgres", started)
            else:
                step("postgres: left running (this command did not start it)", started)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcache", description="fastapi-semcache: a semantic response cache."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="store a response, get it back exactly and semantically, print each step",
        description=(
            f"A round trip through SemanticCache. Uses {PG_URI_ENV} when set, else starts "
            "an embedded development Postgres (the 'embedded' extra) and stops it after."
        ),
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data folder of the embedded Postgres "
        "(default: $XDG_CACHE_HOME/fastapi-semcache/postgres)",
    )
    demo.add_argument(
        "--threshold",
        type=float,
        default=_DEMO_THRESHOLD,
        help=f"cosine similarity of a semantic hit (default {_DEMO_THRESHOLD}, "
        "suited to the demo's hashing embedder)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``semcache`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args, os.environ, sys.stdout)
    except KeyboardInterrupt:
        print("semcache: interrupted", file=sys.stderr)
        return 130
    except (SemanticCacheError, psycopg.Error, OSError) as exc:
        # One line, no traceback: the first line of the message names what failed
        # (server logs that follow it stay in the log file).
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = lines[0] if lines else type(exc).__name__
        print(f"semcache: error: {message}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands first
