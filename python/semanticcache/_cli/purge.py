"""``semcache purge``: delete cache entries by scope, route, model, age, expiry, or all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from semanticcache._cli._common import (
    UsageError,
    add_postgres_arguments,
    format_duration,
    load_settings,
    parse_duration,
    postgres,
)
from semanticcache._cli._tables import open_tables
from semanticcache._key import db_text
from semanticcache._settings import CacheSettings
from semanticcache._storage.pgvector import PgVectorStore
from semanticcache.errors import SemanticCacheError, StorageError

__all__ = ["add_parser", "forget_blobs", "run"]


def add_parser(commands: Any) -> None:
    """Register ``semcache purge``."""
    parser = commands.add_parser(
        "purge",
        help="delete cache entries by scope, route, model, age, expiry, or all",
        description="Delete entries from every cache table (or --table). --scope, "
        "--route, --model, --older-than and --expired combine (AND); --all takes no other "
        "selector and "
        "asks for confirmation on a terminal (--yes skips it; without a terminal --yes "
        "is required). With SEMANTIC_CACHE_REDIS_URI set, the deleted entries' Redis "
        "blobs go too.",
    )
    add_postgres_arguments(parser)
    parser.add_argument("--scope", default=None, help='entries of this scope ("" = unscoped)')
    parser.add_argument(
        "--route",
        default=None,
        help="entries of this route, as the cache keyed it (with the default route key: "
        "scheme://host/path?query), every Vary variant of it",
    )
    parser.add_argument("--model", default=None, help="entries of requests naming this model")
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        default=None,
        metavar="AGE",
        help="entries stored (or last replaced) longer ago than AGE: 90s, 30m, 12h, 7d, 2w",
    )
    parser.add_argument("--expired", action="store_true", help="entries past their TTL")
    parser.add_argument("--all", action="store_true", help="every entry of every cache table")
    parser.add_argument("--table", default=None, help="only this cache table")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before --all")
    parser.set_defaults(run=run)


def _check_selectors(args: argparse.Namespace) -> None:
    for name in ("route", "model"):
        value = getattr(args, name)
        if value is not None and (not value or db_text(value) != value):
            raise UsageError(f"--{name} must be a non-empty string")
    named = (args.scope, args.route, args.model, args.older_than)
    chosen = any(v is not None for v in named) or args.expired
    if args.all and chosen:
        raise UsageError(
            "--all takes no other selector (--scope, --route, --model, --older-than, --expired)"
        )
    if not (args.all or chosen):
        raise UsageError(
            "say what to delete: --scope, --route, --model, --older-than, --expired or --all"
        )


def _describe(args: argparse.Namespace) -> str:
    if args.all:
        return "all"
    parts = []
    if args.scope is not None:
        parts.append(f"scope {args.scope!r}")
    if args.route is not None:
        parts.append(f"route {args.route!r}")
    if args.model is not None:
        parts.append(f"model {args.model!r}")
    if args.older_than is not None:
        parts.append(f"older than {format_duration(args.older_than)}")
    if args.expired:
        parts.append("expired")
    return ", ".join(parts)


async def _count_all(stores: list[PgVectorStore]) -> int:
    return sum([(await store.stats()).rows for store in stores])


async def forget_blobs(
    settings: CacheSettings,
    store: PgVectorStore,
    keys: list[tuple[bytes, bytes, int]] | None,
    err: TextIO,
) -> None:
    """Tombstone the deleted rows' Redis copies; without SEMANTIC_CACHE_REDIS_URI, or
    when Redis fails, advance the table's Redis epoch so that no copy is served."""
    table = store.table
    if settings.redis_uri is not None and keys:
        from semanticcache._storage.redis_tier import RedisBlobStore

        redis = RedisBlobStore(
            settings.redis_uri,
            namespace=table,
            ttl_seconds=settings.effective_redis_ttl_seconds,
            timeout=settings.store_timeout_seconds or 10.0,
        )
        try:
            await redis.bury(keys)
            return
        except StorageError as exc:
            print(f"warning: {table}: Redis copies not deleted ({exc})", file=err)
        finally:
            await redis.close()
    elif settings.redis_uri is None:
        print(
            f"warning: {table}: SEMANTIC_CACHE_REDIS_URI is unset, so Redis copies of the "
            "deleted entries (if any) stay in Redis until their TTL; set it and purge "
            f"again to delete them, or delete the keys semcache:{table}:* by hand",
            file=err,
        )
    await store.advance_redis_epoch()
    print(
        f"warning: {table}: advanced its Redis epoch: caches serve no Redis copy "
        "written before now (they refill from Postgres)",
        file=err,
    )


async def _purge(
    args: argparse.Namespace,
    settings: CacheSettings,
    uri: str,
    shown: str,
    out: TextIO,
    err: TextIO,
) -> int:
    async with open_tables(uri, args.table) as found:
        if not found.stores:
            print("no cache tables in this database: nothing to delete", file=out)
            return 0
        if args.all and not args.yes:
            rows = await _count_all(found.stores)
            if not sys.stdin.isatty():
                raise SemanticCacheError(
                    f"refusing to delete all {rows} entries without confirmation "
                    "(no terminal to ask on): pass --yes"
                )
            tables = len(found.stores)
            try:
                answer = await asyncio.to_thread(
                    input,
                    f"Delete all {rows} entries of {tables} cache "
                    f"table{'s' if tables != 1 else ''} at {shown}? [y/N] ",
                )
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted", file=out)
                return 1
        total = 0
        for store in found.stores:
            keys: list[tuple[bytes, bytes, int]] | None = [] if settings.redis_uri else None
            count = await store.purge(
                scope=db_text(args.scope) if args.scope is not None else None,
                route=args.route,
                model=args.model,
                expired=args.expired,
                older_than=args.older_than,
                all=args.all,
                keys=keys,
            )
            if count:
                await forget_blobs(settings, store, keys, err)
            total += count
            print(f"{store.table}: deleted {count}", file=out)
        print(f"deleted {total} entries ({_describe(args)})", file=out)
    return 0


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache purge``."""
    _check_selectors(args)
    settings = load_settings(args, environ)
    with postgres(args, settings, environ, sys.stdout) as pg:
        return asyncio.run(_purge(args, settings, pg.uri, pg.shown, sys.stdout, sys.stderr))
