"""``semcache stats``: rows, hit counts, expired rows, scopes and sizes of every cache
table in the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any

from semanticcache._cli._common import add_postgres_arguments, format_bytes, load_settings, postgres
from semanticcache._cli._tables import open_tables
from semanticcache._storage.pgvector import StoreStats

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Register ``semcache stats``."""
    parser = commands.add_parser(
        "stats",
        help="rows, hit counts, scopes and sizes of every cache table",
        description="Rows, hit counts (flushed ones), expired rows, per-scope figures, "
        "on-disk size (with indexes) and the nearest similarity of the lookups (by "
        "outcome) of every cache table (semcache_entries_*) in the database.",
    )
    add_postgres_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--table", default=None, help="only this cache table")
    parser.set_defaults(run=run)


async def collect(uri: str, only: str | None = None) -> list[tuple[str, int, StoreStats]]:
    """``(table, dimension, stats)`` of every cache table."""
    async with open_tables(uri, only) as found:
        return [(store.table, store.dimension, await store.stats()) for store in found.stores]


def as_json(rows: list[tuple[str, int, StoreStats]]) -> dict[str, Any]:
    """The ``--json`` document."""
    tables = [
        {
            "table": name,
            "dimension": dimension,
            "rows": s.rows,
            "hits": s.hits,
            "expired_rows": s.expired_rows,
            "table_bytes": s.table_bytes,
            "scopes": {
                scope: {"rows": v.rows, "hits": v.hits, "expired_rows": v.expired_rows}
                for scope, v in sorted(s.scopes.items())
            },
            "nearest_similarity": {k: list(v) for k, v in s.nearest_similarity.items()},
        }
        for name, dimension, s in rows
    ]
    return {
        "tables": tables,
        "total": {
            "tables": len(rows),
            "rows": sum(s.rows for _, _, s in rows),
            "hits": sum(s.hits for _, _, s in rows),
            "expired_rows": sum(s.expired_rows for _, _, s in rows),
            "table_bytes": sum(s.table_bytes for _, _, s in rows),
        },
    }


# The text report's coarse view of the 100 buckets: (label, first bucket, end bucket).
_BINS = (
    ("<0.80", 0, 80),
    ("0.80", 80, 85),
    ("0.85", 85, 90),
    ("0.90", 90, 95),
    ("0.95+", 95, 100),
)


def _nearest_lines(nearest: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The nearest-similarity counts, outcome by outcome, in the coarse bins."""
    if not nearest:
        return []
    width = max(len("outcome"), *(len(outcome) for outcome in nearest))
    lines = [
        "  nearest similarity of the lookups that searched (all processes, flushed):",
        f"  {'outcome':<{width}}" + "".join(f"  {label:>7}" for label, _, _ in _BINS),
    ]
    for outcome, counts in sorted(nearest.items()):
        cells = "".join(f"  {sum(counts[a:b]):>7}" for _, a, b in _BINS)
        lines.append(f"  {outcome:<{width}}{cells}")
    return lines


def _scope_label(scope: str) -> str:
    return '""  (unscoped)' if scope == "" else scope


def as_text(rows: list[tuple[str, int, StoreStats]]) -> str:
    """The human-readable report."""
    if not rows:
        return "no cache tables in this database (a SemanticCache creates its table on first use)\n"
    lines: list[str] = []
    for name, dimension, s in rows:
        lines.append(f"{name}  (vector({dimension}), {format_bytes(s.table_bytes)} on disk)")
        lines.append(f"  rows {s.rows}   hits {s.hits}   expired {s.expired_rows}")
        if s.scopes:
            width = max(len(_scope_label(scope)) for scope in s.scopes)
            width = max(width, len("scope"))
            lines.append(f"  {'scope':<{width}}  {'rows':>8}  {'hits':>8}  {'expired':>8}")
            for scope, v in sorted(s.scopes.items()):
                lines.append(
                    f"  {_scope_label(scope):<{width}}  {v.rows:>8}  {v.hits:>8}  "
                    f"{v.expired_rows:>8}"
                )
        lines.extend(_nearest_lines(s.nearest_similarity))
        lines.append("")
    total = as_json(rows)["total"]
    lines.append(
        f"total: {total['tables']} table{'s' if total['tables'] != 1 else ''}, "
        f"{total['rows']} rows, {total['hits']} hits, {total['expired_rows']} expired, "
        f"{format_bytes(total['table_bytes'])}"
    )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache stats``."""
    settings = load_settings(args, environ)
    # With --json, stdout is the document alone: the server is one of its fields.
    with postgres(args, settings, environ, None if args.json else sys.stdout) as pg:
        rows = asyncio.run(collect(pg.uri, args.table))
        if args.json:
            print(json.dumps({"postgres": pg.shown, **as_json(rows)}, indent=2))
        else:
            sys.stdout.write(as_text(rows))
    return 0
