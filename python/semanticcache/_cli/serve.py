"""``semcache serve``: the caching reverse proxy in front of an upstream API, under uvicorn."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from semanticcache._cli._common import UsageError, add_postgres_arguments, load_settings, postgres
from semanticcache._embedders.factory import missing_extra_error
from semanticcache._settings import mask_connection_string

if TYPE_CHECKING:
    from semanticcache._cache import SemanticCache
    from semanticcache._embedders.base import BaseEmbedder

__all__ = ["UPSTREAM_ENV", "add_parser", "run"]

UPSTREAM_ENV: Final = "SEMANTIC_CACHE_UPSTREAM_URL"
EMBEDDER_ENV: Final = "SEMANTIC_CACHE_EMBEDDER_TYPE"
_LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1..65535): {text!r}")
    return int(text)


def add_parser(commands: Any) -> None:
    """Register ``semcache serve``."""
    parser = commands.add_parser(
        "serve",
        help="run the caching reverse proxy in front of an upstream API",
        description="Run the semantic cache as a reverse proxy (the 'proxy' extra) under "
        "uvicorn: every request goes to --upstream, cacheable POSTs are answered from "
        "the cache when a similar one was seen. The cache is configured by the "
        "SEMANTIC_CACHE_* variables; with none set it runs on the embedded defaults "
        "(local Postgres with pgvector, offline local embedder).",
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help=f"the API to forward to, e.g. http://127.0.0.1:8000 (default: ${UPSTREAM_ENV})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port to listen on (8080)")
    parser.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="uvicorn's log level (info)"
    )
    add_postgres_arguments(parser)
    parser.set_defaults(run=run)


def _upstream(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    url: str
    if args.upstream is not None:
        url, source = args.upstream, "--upstream"
    elif environ.get(UPSTREAM_ENV, "").strip():
        url, source = environ[UPSTREAM_ENV].strip(), UPSTREAM_ENV
    else:
        raise UsageError(f"no upstream to forward to: pass --upstream URL or set {UPSTREAM_ENV}")
    # Everything the proxy would refuse is refused here, before anything starts.
    shown = mask_connection_string(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise UsageError(f"{source} is not a URL: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{source} must be an http:// or https:// URL with a host, not {shown!r}")
    if "@" in parts.netloc:
        raise UsageError(
            f"{source} must not hold user info (send credentials as headers): {shown!r}"
        )
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise UsageError(f"{source} must not have a query string or a fragment: {shown!r}")
    return url


def _proxy_factory() -> Any:
    try:
        # By name: the proxy module and its extra (FastAPI, aiohttp) are optional.
        module = importlib.import_module("semanticcache._proxy")
    except ImportError as exc:
        missing = None if (exc.name or "").startswith("semanticcache") else exc.name
        raise missing_extra_error(missing, "proxy", "semcache serve (the proxy)") from None
    return module.create_semantic_cache_proxy_app


def _run_uvicorn(app: Any, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` until interrupted (a seam for the tests)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_extra_error(exc.name, "proxy", "semcache serve") from None
    # The proxy adds X-Forwarded-* itself: uvicorn must not rewrite the client address
    # from a client-sent header, nor add a second Server / Date pair to forwarded ones.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


def _make_embedder(settings: Any) -> BaseEmbedder:
    """The configured embedder (a seam for the tests): built before Postgres starts, so
    that a missing extra or API key stops the command before anything runs."""
    from semanticcache._embedders.factory import get_embedder

    return get_embedder(settings)


def _make_cache(settings: Any, uri: str, embedder: BaseEmbedder) -> SemanticCache:
    from semanticcache._cache import SemanticCache

    return SemanticCache(settings=settings, pg_uri=uri, embedder=embedder)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache serve``."""
    upstream = _upstream(args, environ)
    create_app = _proxy_factory()
    settings = load_settings(args, environ)
    embedder = _make_embedder(settings)
    defaults = settings.pg_uri is None and EMBEDDER_ENV not in environ
    err = sys.stderr
    if defaults:
        print(
            "semcache serve: running on the embedded defaults: a local Postgres with "
            "pgvector and the offline local embedder (set SEMANTIC_CACHE_PG_URI and "
            f"{EMBEDDER_ENV} for production)",
            file=err,
            flush=True,
        )
    with postgres(args, settings, environ, err) as pg:
        cache = _make_cache(settings, pg.uri, embedder)
        verifier = cache.verifier
        if verifier is None:
            decision = f"threshold {cache.threshold}"
        else:
            decision = (
                f"verifier {verifier.name} (floor {verifier.floor}, a hit at probability "
                f">= {verifier.describe()})"
            )
        print(
            f"embedder: {cache.embedder.model_id} ({cache.embedder.dimension} dimensions), "
            f"table {cache.table}, {decision}",
            file=err,
        )
        print(f"upstream: {upstream}", file=err)
        print(f"listening on http://{args.host}:{args.port}", file=err, flush=True)
        app = create_app(upstream=upstream, cache=cache)
        _run_uvicorn(app, args.host, args.port, args.log_level)
    return 0
