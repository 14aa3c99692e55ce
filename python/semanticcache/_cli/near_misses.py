"""``semcache near-misses URL``: a running server's most recent near misses.

Near misses are kept in each server process's memory, so this asks a server: ``GET
URL/near-misses`` on its admin endpoint, with ``SEMANTIC_CACHE_ADMIN_TOKEN`` as the
bearer token. Each line is digests only: when, similarity, reason, the lookup text's
keyed digest and the nearest entry's token.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from semanticcache._cli._common import UsageError
from semanticcache._settings import CacheSettings
from semanticcache.errors import SemanticCacheError

__all__ = ["add_parser", "run"]

_TIMEOUT = 10.0


def add_parser(commands: Any) -> None:
    """Register ``semcache near-misses``."""
    parser = commands.add_parser(
        "near-misses",
        help="a running server's most recent near misses (digests only)",
        description="List the most recent near misses of the server process that answers: "
        "lookups that missed although an entry came close (stage 2 refused it, or it was "
        "just below the gate). URL is the admin endpoint (the proxy's: "
        "http://HOST:PORT/_semcache/admin); SEMANTIC_CACHE_ADMIN_TOKEN is the token.",
    )
    parser.add_argument("url", help="the admin endpoint's URL")
    parser.add_argument("--json", action="store_true", help="print the JSON answer")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    token = CacheSettings.from_env(environ).admin_token
    if token is None:
        raise UsageError("set SEMANTIC_CACHE_ADMIN_TOKEN to the server's admin token")
    base = str(args.url).rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise UsageError("the URL must be http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        base + "/near-misses",
        headers={"authorization": "Bearer " + token.decode("latin-1")},
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:  # noqa: S310
            body = answer.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise SemanticCacheError("the server refused the admin token") from None
        raise SemanticCacheError(f"the server answered {exc.code}") from None
    try:
        near = json.loads(body)["near_misses"]
    except (ValueError, KeyError, TypeError):
        raise SemanticCacheError("the server's answer is not a near-miss list") from None
    if args.json:
        print(json.dumps({"near_misses": near}, indent=2))
        return 0
    if not near:
        print("no near miss yet")
        return 0
    print(f"{'when':25}  {'similarity':>10}  {'reason':12}  {'lookup digest':16}  entry")
    for n in near:
        print(
            f"{n['at']:25}  {n['similarity']:>10.4f}  {n['reason']:12}  "
            f"{n['text_digest']:16}  {n['entry'] or '-'}"
        )
    sys.stdout.flush()
    return 0
