"""``semcache entries``: the newest entries of every cache table, with their tokens.

Each line is an entry's ``X-Cache-Entry`` token (made under
``SEMANTIC_CACHE_LOG_DIGEST_KEY``, the servers' key: what ``semcache report-wrong`` and
``semcache delete`` take), its scope, route, model, hit count (the flushed ones), when it
was stored and when it expires; never its text or response. ``--scope``, ``--route`` and
``--model`` select as ``semcache purge``'s do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from semanticcache._cli._common import UsageError, add_postgres_arguments, load_settings, postgres
from semanticcache._cli._tables import open_tables
from semanticcache._entry_token import entry_token
from semanticcache._key import db_text

__all__ = ["add_parser", "run"]

_LIMIT = 20


def add_parser(commands: Any) -> None:
    """Register ``semcache entries``."""
    parser = commands.add_parser(
        "entries",
        help="the newest entries of every cache table, with their tokens",
        description="List the newest entries of every cache table: the X-Cache-Entry "
        "token (under SEMANTIC_CACHE_LOG_DIGEST_KEY, the servers' key), scope, route, "
        "model, hits, when stored and when it expires. Never the text or the response.",
    )
    add_postgres_arguments(parser)
    parser.add_argument("--table", default=None, help="only this cache table")
    parser.add_argument("--scope", default=None, help='only this scope ("" = unscoped)')
    parser.add_argument("--route", default=None, help="only this route")
    parser.add_argument("--model", default=None, help="only this model")
    parser.add_argument(
        "--limit", type=int, default=_LIMIT, help=f"at most this many per table (default {_LIMIT})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed entry."""

    entry: str
    scope: str
    route: str
    model: str | None
    hits: int
    created_at: datetime
    expires_at: datetime | None
    """``None``: never."""


async def collect(uri: str, key: bytes, args: argparse.Namespace) -> list[tuple[str, list[Entry]]]:
    """``(table, newest entries)`` of every cache table (or ``args.table``)."""
    conditions: list[sql.Composable] = []
    params: list[object] = []
    for column in ("scope", "route", "model"):
        value = getattr(args, column)
        if value is not None:
            conditions.append(sql.SQL("{c} = %s").format(c=sql.Identifier(column)))
            params.append(db_text(value))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    listed = []
    async with open_tables(uri, args.table) as found:
        for store in found.stores:
            query = sql.SQL(
                "SELECT id, scope, route, model, hit_count, created_at, "
                "CASE WHEN expires_at < 'infinity' THEN expires_at END FROM {t}{w} "
                "ORDER BY created_at DESC, id DESC LIMIT %s"
            ).format(t=sql.Identifier(store.table), w=where)
            async with store.pool.connection() as conn:
                cur = await conn.execute(query, (*params, args.limit))
                rows = await cur.fetchall()
            entries = [
                Entry(
                    entry_token(key, store.table, int(r[0])),
                    str(r[1]),
                    str(r[2]),
                    r[3],
                    int(r[4]),
                    r[5],
                    r[6],
                )
                for r in rows
            ]
            listed.append((store.table, entries))
    return listed


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")


def as_json(listed: list[tuple[str, list[Entry]]]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "tables": [
            {
                "table": table,
                "entries": [
                    {
                        "entry": e.entry,
                        "scope": e.scope,
                        "route": e.route,
                        "model": e.model,
                        "hits": e.hits,
                        "created_at": _when(e.created_at),
                        "expires_at": _when(e.expires_at),
                    }
                    for e in entries
                ],
            }
            for table, entries in listed
        ]
    }


def _cell(value: str | None) -> str:
    if value is None:
        return "-"
    return '""' if value == "" else value


def as_text(listed: list[tuple[str, list[Entry]]]) -> str:
    """The human-readable list."""
    if not listed:
        return "no cache tables in this database (a SemanticCache creates its table on first use)\n"
    lines: list[str] = []
    for table, entries in listed:
        lines.append(table)
        if not entries:
            lines.append("  no entry")
        else:
            scope_w = max(len("scope"), *(len(_cell(e.scope)) for e in entries))
            model_w = max(len("model"), *(len(_cell(e.model)) for e in entries))
            lines.append(
                f"  {'entry':32}  {'stored (UTC)':19}  {'hits':>6}  {'scope':{scope_w}}  "
                f"{'model':{model_w}}  route"
            )
        for e in entries:
            stored = e.created_at.astimezone(UTC).isoformat(timespec="seconds")
            lines.append(
                f"  {e.entry:32}  {stored[:19].replace('T', ' ')}  {e.hits:>6}  "
                f"{_cell(e.scope):{scope_w}}  {_cell(e.model):{model_w}}  {e.route or '-'}"
            )
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache entries``."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    settings = load_settings(args, environ)
    key = settings.log_digest_key
    if key is None:
        raise UsageError(
            "SEMANTIC_CACHE_LOG_DIGEST_KEY is unset: tokens are made under the key the servers use"
        )
    # With --json, stdout is the document alone: the server is one of its fields.
    with postgres(args, settings, environ, None if args.json else sys.stdout) as pg:
        listed = asyncio.run(collect(pg.uri, key, args))
        if args.json:
            print(json.dumps({"postgres": pg.shown, **as_json(listed)}, indent=2))
        else:
            sys.stdout.write(as_text(listed))
    return 0
