"""``semcache near-misses``: the most recent near misses of every cache table.

Every server process writes its near misses to Postgres (``semcache_near_misses``), so
this reads them there, as ``semcache stats`` reads the tables. Each line is digests
only, as the server that saw the near miss made them: when, scope, similarity, reason,
the lookup text's keyed digest and the nearest entry's token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from semanticcache._cli._common import UsageError, add_postgres_arguments, load_settings, postgres
from semanticcache._cli._tables import open_tables
from semanticcache._storage import near_misses
from semanticcache._storage.near_misses import NearMiss

__all__ = ["add_parser", "run"]

_LIMIT = 20


def add_parser(commands: Any) -> None:
    """Register ``semcache near-misses``."""
    parser = commands.add_parser(
        "near-misses",
        help="the most recent near misses of every cache table (digests only)",
        description="List the most recent near misses of every server process, newest "
        "first: lookups that missed although an entry came close (stage 2 refused it, or "
        f"it was just below the gate). Postgres keeps the last {near_misses.KEPT} of each "
        "cache table.",
    )
    add_postgres_arguments(parser)
    parser.add_argument("--table", default=None, help="only this cache table")
    parser.add_argument("--scope", default=None, help='only this scope ("" = unscoped)')
    parser.add_argument(
        "--limit",
        type=int,
        default=_LIMIT,
        help=f"at most this many per table (default {_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


async def collect(
    uri: str, only: str | None, scope: str | None, limit: int
) -> list[tuple[str, list[NearMiss]]]:
    """``(table, near misses)`` of every cache table."""
    async with open_tables(uri, only) as found:
        listed = []
        for store in found.stores:
            async with store.pool.connection() as conn:
                near = await near_misses.read(conn, store.table, scope=scope, limit=limit)
            listed.append((store.table, near))
        return listed


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def as_json(listed: list[tuple[str, list[NearMiss]]]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "tables": [
            {
                "table": table,
                "near_misses": [
                    {
                        "at": _iso(n.at),
                        "scope": n.scope,
                        "text_digest": n.text_digest,
                        "entry": n.entry,
                        "similarity": round(n.similarity, 4),
                        "reason": n.reason,
                    }
                    for n in near
                ],
            }
            for table, near in listed
        ]
    }


def as_text(listed: list[tuple[str, list[NearMiss]]]) -> str:
    """The human-readable list."""
    if not listed:
        return "no cache tables in this database (a SemanticCache creates its table on first use)\n"
    lines: list[str] = []
    for table, near in listed:
        lines.append(table)
        if not near:
            lines.append("  no near miss yet")
        else:
            lines.append(
                f"  {'when (UTC)':19}  {'similarity':>10}  {'reason':12}  "
                f"{'lookup digest':16}  {'entry':32}  scope"
            )
        for n in near:
            lines.append(
                f"  {_iso(n.at)[:19].replace('T', ' ')}  {n.similarity:>10.4f}  "
                f"{n.reason:12}  {n.text_digest:16}  {n.entry or '-':32}  "
                + ('""' if n.scope == "" else n.scope)
            )
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache near-misses``."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    settings = load_settings(args, environ)
    # With --json, stdout is the document alone: the server is one of its fields.
    with postgres(args, settings, environ, None if args.json else sys.stdout) as pg:
        listed = asyncio.run(collect(pg.uri, args.table, args.scope, args.limit))
        if args.json:
            print(json.dumps({"postgres": pg.shown, **as_json(listed)}, indent=2))
        else:
            sys.stdout.write(as_text(listed))
    return 0
