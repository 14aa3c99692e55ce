"""``semcache report-wrong TOKEN`` and ``semcache delete TOKEN``: one entry, named by the
``X-Cache-Entry`` token of a hit.

A token is read under ``SEMANTIC_CACHE_LOG_DIGEST_KEY`` (the key the servers made it
with) and names one cache table's entry. ``report-wrong`` deletes it and keeps it as a
negative example (``semcache_negatives``); ``delete`` only deletes it. Either way the
entry leaves every process's hot memory (the table's triggers) and Redis (its copy is
tombstoned, else the table's Redis epoch advanced).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from semanticcache._cli._common import UsageError, add_postgres_arguments, load_settings, postgres
from semanticcache._cli._tables import open_tables
from semanticcache._cli.purge import forget_blobs
from semanticcache._entry_token import entry_id_of
from semanticcache._feedback import remove_row
from semanticcache._settings import CacheSettings

__all__ = ["add_parsers", "run"]


def add_parsers(commands: Any) -> None:
    """Register ``semcache report-wrong`` and ``semcache delete``."""
    for name, what in (
        ("report-wrong", "delete a wrong hit's entry and keep it as a negative example"),
        ("delete", "delete one entry"),
    ):
        parser = commands.add_parser(
            name,
            help=f"{what}, by its X-Cache-Entry token",
            description=f"{what[0].upper()}{what[1:]}, named by the X-Cache-Entry token of a "
            "hit (read under SEMANTIC_CACHE_LOG_DIGEST_KEY, the servers' key). Hot copies in "
            "every process and the Redis copy go with it.",
        )
        add_postgres_arguments(parser)
        parser.add_argument("token", help="the X-Cache-Entry header of the hit")
        parser.add_argument(
            "--scope", default=None, help='only if the entry is of this scope ("" = unscoped)'
        )
        if name == "report-wrong":
            parser.add_argument(
                "--lookup-text",
                default=None,
                help="the request text that got the wrong answer (kept with the negative)",
            )
        parser.set_defaults(run=run, negative=name == "report-wrong")


async def _remove(
    args: argparse.Namespace, settings: CacheSettings, uri: str, out: TextIO, err: TextIO
) -> int:
    key = settings.log_digest_key
    assert key is not None
    token = args.token.strip().lower()
    async with open_tables(uri) as found:
        for store in found.stores:
            entry_id = entry_id_of(key, store.table, token)
            if entry_id is None:
                continue
            row = await remove_row(
                store.pool,
                store.table,
                entry_id,
                scope=args.scope,
                negative=args.negative,
                lookup_text=getattr(args, "lookup_text", None),
            )
            if row is None:
                break
            await forget_blobs(settings, store, [row], err)
            done = "reported wrong and deleted" if args.negative else "deleted"
            print(f"{store.table}: {done} the entry", file=out)
            return 0
    where = f" of scope {args.scope!r}" if args.scope is not None else ""
    print(f"no such entry{where}", file=err)
    return 1


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache report-wrong`` and ``semcache delete``."""
    settings = load_settings(args, environ)
    if settings.log_digest_key is None:
        raise UsageError(
            "SEMANTIC_CACHE_LOG_DIGEST_KEY is unset: a token is read under the key the "
            "servers made it with"
        )
    with postgres(args, settings, environ, sys.stderr) as pg:
        return asyncio.run(_remove(args, settings, pg.uri, sys.stdout, sys.stderr))
