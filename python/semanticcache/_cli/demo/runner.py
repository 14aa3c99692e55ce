"""Running ``semcache demo``: the stand-in LLM behind the middleware under uvicorn, the
stream of questions sent to it, the table and the summary.

Each run works in a scope of its own (``demo-<random>``), so runs never see each other's
entries; the scope is purged at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from semanticcache._cli._common import UsageError, load_settings, postgres
from semanticcache._cli.demo.llm import ID_PREFIX, MODEL, PATH, StandInLLM, stand_in_latency_ms
from semanticcache._cli.demo.questions import (
    Group,
    Question,
    build_stream,
    load_groups,
    look_alikes,
)
from semanticcache._cli.demo.report import Decision, Outcome, summary
from semanticcache._cli.demo.table import MIN_LIVE_COLUMNS, Table
from semanticcache._embedders.factory import missing_extra_error
from semanticcache.errors import SemanticCacheError

if TYPE_CHECKING:
    import httpx
    import uvicorn
    from starlette.requests import Request

    from semanticcache._cache import SemanticCache
    from semanticcache._key import CacheKey
    from semanticcache._middleware import SemanticCacheMiddleware
    from semanticcache._results import CacheLookup
    from semanticcache._settings import CacheSettings

__all__ = ["RECOMMENDED_THRESHOLD", "THRESHOLD_ENV", "run"]

RECOMMENDED_THRESHOLD: Final = 0.958
"""The threshold docs/BENCHMARKS.md recommends for the local embedder with the agreement
check on and the verifier off (false hits <= 1 % on the QQP dev pairs)."""
THRESHOLD_ENV: Final = "SEMANTIC_CACHE_THRESHOLD"


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``app`` under uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off only on sockets
    # whose proto says TCP, and accepted connections inherit it. With proto 0 every
    # response (headers, then body) waited out the client's delayed ACK: 40 ms a request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise SemanticCacheError("the demo's HTTP server stopped at start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def _send(
    client: httpx.AsyncClient,
    middleware: SemanticCacheMiddleware,
    lookups: list[CacheLookup],
    index: int,
    q: Question,
) -> Outcome:
    import httpx

    first = len(lookups)
    started = time.perf_counter()
    try:
        response = await client.post(
            PATH, json={"model": MODEL, "messages": [{"role": "user", "content": q.text}]}
        )
    except httpx.HTTPError as exc:
        raise SemanticCacheError(f"demo request {index} failed: {exc!r}") from exc
    latency = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SemanticCacheError(f"the demo endpoint answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise SemanticCacheError(f"demo request {index}: the answer is not JSON") from exc
    served = str(body.get("id", "") if isinstance(body, dict) else "").removeprefix(ID_PREFIX)
    similarity = response.headers.get("x-cache-similarity")
    # Stores run after the response: let this one finish before the next question, as
    # it would have in traffic with any gap between requests.
    await middleware.drain(wait=30.0)
    # The request's own lookup (none when it was bypassed): why it missed, and how near.
    lookup = lookups[first] if len(lookups) > first else None
    shown = float(similarity) if similarity else None
    if shown is None and lookup is not None:
        shown = lookup.best_similarity
        if shown is None:
            shown = lookup.nearest_similarity
    return Outcome(
        index=index,
        question=q,
        cache=response.headers.get("x-cache", "?"),
        match=response.headers.get("x-cache-match"),
        similarity=shown,
        latency_ms=latency,
        served_group=served,
        reason=lookup.reason if lookup is not None else None,
        probability=lookup.probability if lookup is not None else None,
    )


def _recording_cache(
    settings: CacheSettings, **kwargs: Any
) -> tuple[SemanticCache, list[CacheLookup]]:
    """A cache that keeps every lookup's full outcome (the middleware's headers say HIT
    or MISS, not what refused a candidate)."""
    from semanticcache._cache import SemanticCache

    lookups: list[CacheLookup] = []

    class Recording(SemanticCache):
        async def lookup(
            self, key: CacheKey | str, *, partition: bytes | None = None
        ) -> CacheLookup:
            result = await super().lookup(key, partition=partition)
            lookups.append(result)
            return result

    return Recording(settings=settings, **kwargs), lookups


def _decision(cache: SemanticCache, threshold_source: str) -> Decision:
    verifier = cache.verifier
    settings = cache.settings
    check = settings.agreement_check
    if verifier is None:
        return Decision(cache.threshold, threshold_source, agreement_check=check)
    if settings.verifier_floor is not None:
        floor_source = "SEMANTIC_CACHE_VERIFIER_FLOOR"
    else:
        floor_source = "the verifier's floor"
    if settings.verifier_threshold is not None:
        source = "SEMANTIC_CACHE_VERIFIER_THRESHOLD"
    else:
        source = (
            f"its threshold for <= {100 * settings.max_false_hit_rate:g} % false hits: "
            "SEMANTIC_CACHE_MAX_FALSE_HIT_RATE"
        )
    return Decision(
        verifier.floor,
        floor_source,
        verifier.name,
        verifier.describe(),
        source,
        candidates=settings.top_k_candidates,
        agreement_check=check,
    )


async def _demo(
    args: argparse.Namespace,
    make_cache: Callable[[], tuple[SemanticCache, list[CacheLookup]]],
    groups: Sequence[Group],
    stream: Sequence[Question],
    threshold_source: str,
    out: TextIO,
) -> int:
    import httpx

    from semanticcache._middleware import SemanticCacheMiddleware

    cache, lookups = make_cache()
    decision = _decision(cache, threshold_source)

    scope = f"demo-{secrets.token_hex(4)}"
    llm = StandInLLM(groups, seed=args.seed, latency_ms=args.latency_ms)

    def run_scope(request: Request, body: bytes) -> str:
        return scope

    middleware = SemanticCacheMiddleware(llm.app, cache=cache, extract_scope=run_scope)
    live = (
        out.isatty()
        and not args.no_live
        and shutil.get_terminal_size((100, 40)).columns >= MIN_LIVE_COLUMNS
    )
    async with cache:
        print(
            f"embedder: {cache.embedder.model_id} ({cache.embedder.dimension} dimensions), "
            "runs offline",
            file=out,
        )
        for line in decision.lines():
            print(line, file=out)
        async with _serving(middleware) as (url, server):
            low, high = args.latency_ms
            print(
                f"upstream: stand-in LLM at {url}{PATH}, {low}-{high} ms an answer "
                f"(seed {args.seed})",
                file=out,
            )
            print(
                f"questions: {len(stream)} ({len(groups)} groups of paraphrases and near "
                f"misses), cache scope {scope}\n",
                file=out,
                flush=True,
            )
            table = Table(out, live=live, total=len(stream))
            table.start()
            outcomes: list[Outcome] = []
            started = time.perf_counter()
            async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
                for index, question in enumerate(stream, start=1):
                    if server.should_exit:
                        break
                    outcome = await _send(client, middleware, lookups, index, question)
                    outcomes.append(outcome)
                    table.add(outcome, sum(1 for o in outcomes if o.hit))
            seconds = time.perf_counter() - started
        saved_ms = sum(
            stand_in_latency_ms(o.question.text, args.seed, args.latency_ms)
            for o in outcomes
            if o.hit
        )
        print("", file=out)
        interrupted = len(outcomes) < len(stream)
        if interrupted:
            # uvicorn took the Ctrl-C (it stops the server): summarise what was sent.
            print(f"interrupted after {len(outcomes)} of {len(stream)} questions", file=out)
        lines = summary(
            outcomes,
            llm.calls,
            seconds,
            saved_ms,
            decision=decision,
            look_alikes=look_alikes(groups),
        )
        for line in lines:
            print(line, file=out)
        if args.keep:
            print(
                f"\nkept the run's entries in scope {scope} "
                f"(semcache purge --scope {scope} removes them)",
                file=out,
            )
        else:
            removed = await cache.purge(scope=scope)
            print(
                f"\nremoved the run's {removed} cache entries (scope {scope}; --keep keeps them)",
                file=out,
            )
    return 130 if interrupted else 0


def _imports() -> None:
    for module, what in (("uvicorn", "uvicorn"), ("httpx", "httpx"), ("onnxruntime", "local")):
        try:
            __import__(module)
        except ImportError as exc:
            raise missing_extra_error(exc.name, "embedded", f"semcache demo ({what})") from None


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``semcache demo``."""
    _imports()
    from semanticcache._embedders.local import LocalEmbedder

    out = sys.stdout
    settings = load_settings(args, environ)
    if args.no_verifier:
        settings = dataclasses.replace(settings, verifier="off")
    elif args.threshold is not None and settings.verifier != "off":
        # The demo's local embedder turns an `auto` verifier on: the similarity threshold
        # would not decide anything.
        raise UsageError(
            "--threshold is the similarity a hit needs without the verifier: add "
            "--no-verifier (the verifier's own threshold comes from "
            "SEMANTIC_CACHE_MAX_FALSE_HIT_RATE or SEMANTIC_CACHE_VERIFIER_THRESHOLD)"
        )
    if args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    elif THRESHOLD_ENV in environ:
        threshold, source = settings.threshold, THRESHOLD_ENV
    else:
        threshold = RECOMMENDED_THRESHOLD
        source = "docs/BENCHMARKS.md's recommendation for this embedder"
    groups = load_groups()
    count = args.count if args.count is not None else sum(len(g.questions) for g in groups)
    stream = build_stream(groups, count, args.seed)
    print(
        "semcache demo: SemanticCacheMiddleware in front of a stand-in LLM endpoint "
        "(no API key, no network)",
        file=out,
        flush=True,
    )
    with postgres(args, settings, environ, out) as pg:
        embedder = LocalEmbedder()

        def make_cache() -> tuple[SemanticCache, list[CacheLookup]]:
            # Made inside the event loop that uses its pool.
            return _recording_cache(settings, pg_uri=pg.uri, embedder=embedder, threshold=threshold)

        try:
            return asyncio.run(_demo(args, make_cache, groups, stream, source, out))
        finally:
            embedder.close()
