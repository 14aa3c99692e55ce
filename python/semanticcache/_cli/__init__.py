"""The ``semcache`` command (also ``python -m semanticcache``).

``demo`` (the product on embedded defaults), ``serve`` (the caching reverse proxy),
``stats``, ``purge``, ``entries`` (in :mod:`.listing`), ``report-wrong`` and ``delete``
(both in :mod:`.entries`, registered by its ``add_parsers``), ``calibrate`` and
``near-misses``: one module per command, each with an ``add_parser(commands)`` and a
``run(args, environ) -> int``. This package is the edge: it reads ``os.environ`` (through
:meth:`CacheSettings.from_env`) and turns every error into one line on stderr and an exit
status (2 for usage, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import psycopg

from semanticcache._cli import (
    calibrate,
    demo,
    entries,
    listing,
    near_misses,
    purge,
    serve,
    stats,
)
from semanticcache._cli._common import UsageError
from semanticcache._settings import mask_connection_string
from semanticcache.errors import SemanticCacheError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage errors exit 2, as argparse's do)."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes what it could not take ("unrecognized arguments: ..."), and an
        # argument can be a URI with its password.
        message = mask_connection_string(message)
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``semcache`` and its subcommands."""
    parser = _Parser(
        prog="semcache",
        description="fastapi-semcache: a semantic response cache on Postgres + pgvector.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, serve, stats, purge, listing, calibrate, near_misses):
        module.add_parser(commands)
    entries.add_parsers(commands)
    return parser


def _one_line(exc: BaseException) -> str:
    # The first line names what failed (server logs that follow it stay in their file).
    # Masked: drivers and servers quote connection strings in their messages.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return mask_connection_string(lines[0]) if lines else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``semcache`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args, os.environ)
    except KeyboardInterrupt:
        print("semcache: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"semcache {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (SemanticCacheError, psycopg.Error, OSError) as exc:
        print(f"semcache {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return status
