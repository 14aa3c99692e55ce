"""``semcache demo``: the product's main job on embedded defaults, no key, no network.

An embedded Postgres with pgvector (or ``--pg-uri``), the offline local embedder, and a
stand-in LLM endpoint (a small OpenAI-compatible chat-completions app that answers from
the question after a seeded 300-800 ms "thinking" delay) behind
:class:`~semanticcache.middleware.SemanticCacheMiddleware`, served by uvicorn on
loopback. An HTTP client sends a stream of paraphrased and distinct questions
(``data/demo_questions.json``) and a live table shows each one's outcome, then a
summary: hit rate, false hits, latency of hits and misses, upstream calls saved.

Each run works in a scope of its own (``demo-<random>``), so runs never see each other's
entries; the scope is purged at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.resources
import json
import random
import secrets
import shutil
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from semanticcache.cli._common import add_postgres_arguments, load_settings, postgres
from semanticcache.embedders.factory import missing_extra_error
from semanticcache.errors import SemanticCacheError

if TYPE_CHECKING:
    import httpx
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response

    from semanticcache.cache import SemanticCache
    from semanticcache.middleware import SemanticCacheMiddleware

__all__ = [
    "RECOMMENDED_THRESHOLD",
    "Group",
    "Outcome",
    "StandInLLM",
    "add_parser",
    "build_stream",
    "load_groups",
    "run",
]

RECOMMENDED_THRESHOLD: Final = 0.958
"""The threshold docs/BENCHMARKS.md recommends for the local embedder with the agreement
check on, the default (false hits <= 1 % on the QQP dev pairs)."""
THRESHOLD_ENV: Final = "SEMANTIC_CACHE_THRESHOLD"
DEFAULT_LATENCY_MS: Final = (300, 800)
DEFAULT_SEED: Final = 7
MODEL: Final = "demo-llm"
PATH: Final = "/v1/chat/completions"
_ID_PREFIX: Final = "chatcmpl-demo-"
_WINDOW: Final = 14  # rows of the live table kept on screen
_TEXT_WIDTH: Final = 50
# Characters of a row besides the request text: number, outcome, similarity, latency.
_FIXED_WIDTH: Final = 44
# Narrower terminals get plain lines: a wrapped row would break the in-place redraw.
MIN_LIVE_COLUMNS: Final = 70


@dataclass(frozen=True, slots=True)
class Group:
    """Paraphrases of one question, which deserve the same answer."""

    id: str
    answer: str
    questions: tuple[str, ...]
    near_miss_of: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """One request of the stream."""

    text: str
    group: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request got."""

    index: int
    question: Question
    cache: str
    """``X-Cache``: HIT, MISS, BYPASS or ERROR."""
    match: str | None
    """``exact`` or ``semantic`` on a hit."""
    similarity: float | None
    latency_ms: float
    served_group: str
    """The question group whose answer came back."""

    @property
    def hit(self) -> bool:
        """Whether the cache answered."""
        return self.cache == "HIT"

    @property
    def false_hit(self) -> bool:
        """A hit that answered a different question group."""
        return self.hit and self.served_group != self.question.group


def load_groups() -> list[Group]:
    """The demo's question groups (package data)."""
    data = importlib.resources.files("semanticcache.cli").joinpath("data/demo_questions.json")
    document = json.loads(data.read_text(encoding="utf-8"))
    return [
        Group(g["id"], g["answer"], tuple(g["questions"]), g.get("near_miss_of"))
        for g in document["groups"]
    ]


def build_stream(groups: Sequence[Group], count: int, seed: int) -> list[Question]:
    """``count`` questions: every question of every group once in a seeded random order,
    then (past that) seeded reshuffles of them again (exact repeats)."""
    questions = [Question(q, g.id) for g in groups for q in g.questions]
    rng = random.Random(seed)  # noqa: S311 - a reproducible demo order, not a secret
    stream: list[Question] = []
    while len(stream) < count:
        batch = list(questions)
        rng.shuffle(batch)
        stream.extend(batch[: count - len(stream)])
    return stream


def stand_in_latency_ms(text: str, seed: int, bounds: tuple[int, int]) -> float:
    """The stand-in's delay for ``text``: uniform in ``bounds``, the same for the same
    text and seed."""
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return random.Random(digest).uniform(*bounds)  # noqa: S311 - simulated latency


class StandInLLM:
    """An OpenAI-compatible ``POST /v1/chat/completions`` that answers from the question.

    The answer is the one of the question's group (a fixed text for unknown questions),
    after :func:`stand_in_latency_ms`; the completion's ``id`` names the group, so the
    demo can tell which question a cached answer was for. Counts its calls.
    """

    def __init__(self, groups: Sequence[Group], *, seed: int, latency_ms: tuple[int, int]):
        from starlette.applications import Starlette
        from starlette.routing import Route

        self._by_text = {q: g for g in groups for q in g.questions}
        self._seed = seed
        self._latency = latency_ms
        self.calls = 0
        """Requests answered (what the cache did not save)."""
        self.app = Starlette(routes=[Route(PATH, self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        body = await request.json()
        messages = body.get("messages") if isinstance(body, dict) else None
        users = [
            m.get("content")
            for m in messages or []
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        question = users[-1] if users and isinstance(users[-1], str) else ""
        group = self._by_text.get(question)
        group_id = group.id if group is not None else "unknown"
        answer = group.answer if group is not None else "The stand-in LLM does not know that."
        await asyncio.sleep(stand_in_latency_ms(question, self._seed, self._latency) / 1000)
        self.calls += 1
        return JSONResponse(
            {
                "id": f"{_ID_PREFIX}{group_id}",
                "object": "chat.completion",
                "created": 1_767_225_600,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(question.split()),
                    "completion_tokens": len(answer.split()),
                    "total_tokens": len(question.split()) + len(answer.split()),
                },
            }
        )


# --- arguments -----------------------------------------------------------------------------


def _latency(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        bounds = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a latency: {text!r} (accepted: MS or MIN-MAX in milliseconds, e.g. 300-800)"
        ) from None
    if not 0 <= bounds[0] <= bounds[1] <= 60_000:
        raise argparse.ArgumentTypeError(
            f"latency must be 0 <= MIN <= MAX <= 60000 ms, not {text!r}"
        )
    return bounds


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"--count must be in 1..10000, not {text!r}")
    return int(text)


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--threshold must be in (0, 1], not {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Register ``semcache demo``."""
    parser = commands.add_parser(
        "demo",
        help="the cache in front of a stand-in LLM endpoint, on embedded defaults",
        description="Start the embedded stack (Postgres with pgvector, the offline local "
        "embedder) and a stand-in OpenAI-compatible LLM endpoint behind "
        "SemanticCacheMiddleware, send it a stream of paraphrased and distinct questions, "
        "and show what the cache answered. Uses --pg-uri or SEMANTIC_CACHE_PG_URI when "
        "given, else the embedded development Postgres (started and stopped if it was "
        "not running). No API key, no network.",
    )
    add_postgres_arguments(parser)
    parser.add_argument(
        "--count",
        type=_count,
        default=None,
        help="questions to send (default: each question of the sample once)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency,
        default=DEFAULT_LATENCY_MS,
        metavar="MIN-MAX",
        help="the stand-in LLM's answer time (default 300-800, seeded per question)",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help=f"similarity of a semantic hit (default: ${THRESHOLD_ENV}, else "
        f"{RECOMMENDED_THRESHOLD}, docs/BENCHMARKS.md's value for the local embedder)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="order of questions and latencies (7)"
    )
    parser.add_argument(
        "--no-live", action="store_true", help="plain lines instead of the live table"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's entries (default: purge its scope)"
    )
    parser.set_defaults(run=run)


# --- output ----------------------------------------------------------------------------------


class _Colour:
    def __init__(self, enabled: bool) -> None:
        self._on = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._on else text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class _Table:
    """Rows as plain lines, or (on a terminal) a live window redrawn in place."""

    def __init__(self, out: TextIO, *, live: bool, total: int) -> None:
        self._out = out
        self._live = live
        self._total = total
        self._colour = _Colour(live)
        self._rows: list[str] = []
        self._drawn = 0
        self._started = time.perf_counter()
        size = shutil.get_terminal_size((100, 40))
        self._window = max(3, min(_WINDOW, size.lines - 14))
        # Live rows must fit on one terminal line (the redraw counts lines); plain lines
        # keep the full width.
        self._columns = size.columns - 1 if live else None

    def _text_width(self, suffix: str) -> int:
        if self._columns is None:
            return _TEXT_WIDTH
        return max(12, min(_TEXT_WIDTH, self._columns - _FIXED_WIDTH - len(suffix)))

    def header(self) -> str:
        """The column titles."""
        width = self._text_width("")
        return f"{'#':>4}  {'request':<{width}}  {'cache':<13}  {'similarity':>10}  {'latency':>9}"

    def start(self) -> None:
        """Print the column titles (live mode draws them with each redraw)."""
        if not self._live:
            print(self.header(), file=self._out, flush=True)

    def add(self, outcome: Outcome, hits: int) -> None:
        """Show one more outcome (``hits`` so far, for the progress line)."""
        c = self._colour
        if outcome.hit:
            cache = c(f"HIT {outcome.match or ''}".ljust(13), "32")
        elif outcome.cache == "MISS":
            cache = c("MISS".ljust(13), "33")
        else:
            cache = c(outcome.cache.ljust(13), "31")
        similarity = f"{outcome.similarity:.4f}" if outcome.similarity is not None else "-"
        suffix = f"  FALSE HIT (answer for {outcome.served_group})" if outcome.false_hit else ""
        if self._columns is not None:
            suffix = suffix[: max(0, self._columns - _FIXED_WIDTH - 12)]
        width = self._text_width(suffix)
        flag = c(suffix, "1;31") if suffix else ""
        row = (
            f"{outcome.index:>4}  {_clip(outcome.question.text, width):<{width}}  "
            f"{cache}  {similarity:>10}  {outcome.latency_ms:>6.0f} ms{flag}"
        )
        if not self._live:
            print(row, file=self._out, flush=True)
            return
        self._rows.append(row)
        self._redraw(outcome.index, hits)

    def _redraw(self, done: int, hits: int) -> None:
        elapsed = time.perf_counter() - self._started
        width = 30
        filled = round(width * done / self._total) if self._total else width
        progress = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}  "
            f"hits {hits}  misses {done - hits}  {elapsed:.1f} s"
        )
        lines = [self.header(), *self._rows[-self._window :], progress]
        # Back to the top of the previous drawing, clear to the end of the screen, redraw.
        prefix = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self._out.write(prefix + "\n".join(lines) + "\n")
        self._out.flush()
        self._drawn = len(lines)


def _p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summary(
    outcomes: Sequence[Outcome], upstream_calls: int, seconds: float, saved_ms: float
) -> list[str]:
    """The summary lines."""
    n = len(outcomes)
    hits = [o for o in outcomes if o.hit]
    exact = sum(1 for o in hits if o.match == "exact")
    false_hits = [o for o in hits if o.false_hit]
    errors = sum(1 for o in outcomes if o.cache not in ("HIT", "MISS"))
    hit_p50 = _p50([o.latency_ms for o in hits])
    miss_p50 = _p50([o.latency_ms for o in outcomes if not o.hit])
    rate = 100 * len(hits) / n if n else 0.0
    misses = n - len(hits)
    lines = [
        "summary",
        f"  requests        {n} in {seconds:.1f} s",
        f"  hit rate        {rate:.1f} %  ({len(hits)} hits: {exact} exact, "
        f"{len(hits) - exact} semantic; {misses} misses"
        + (f", {errors} bypassed or failed)" if errors else ")"),
        f"  false hits      {len(false_hits)}"
        + (
            "  (every hit answered its own question group)"
            if not false_hits
            else "  (" + "; ".join(f"#{o.index} got {o.served_group}" for o in false_hits) + ")"
        ),
    ]
    if hit_p50 is not None and miss_p50 is not None:
        lines.append(
            f"  p50 latency     hit {hit_p50:.0f} ms, miss {miss_p50:.0f} ms "
            f"({miss_p50 / max(hit_p50, 0.001):.0f}x faster)"
        )
    elif miss_p50 is not None:
        lines.append(f"  p50 latency     miss {miss_p50:.0f} ms (no hits)")
    # A miss for a question whose group was asked before: the cache had its answer, but
    # the wording scored below the threshold (the price of few false hits).
    seen: set[str] = set()
    missed = 0
    for o in outcomes:
        if o.cache == "MISS" and o.question.group in seen:
            missed += 1
        seen.add(o.question.group)
    if missed:
        lines.append(
            f"  missed          {missed} paraphrase{'s' if missed != 1 else ''} of earlier "
            "questions scored below the threshold"
        )
    saved = n - upstream_calls
    lines.append(
        f"  upstream calls  {upstream_calls} of {n}: {saved} saved "
        f"({100 * saved / n if n else 0.0:.1f} %), about {saved_ms / 1000:.1f} s of LLM time"
    )
    return lines


# --- the run ---------------------------------------------------------------------------------


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
    client: httpx.AsyncClient, middleware: SemanticCacheMiddleware, index: int, q: Question
) -> Outcome:
    import httpx

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
    served = str(body.get("id", "") if isinstance(body, dict) else "").removeprefix(_ID_PREFIX)
    similarity = response.headers.get("x-cache-similarity")
    # Stores run after the response: let this one finish before the next question, as
    # it would have in traffic with any gap between requests.
    await middleware.drain(wait=30.0)
    return Outcome(
        index=index,
        question=q,
        cache=response.headers.get("x-cache", "?"),
        match=response.headers.get("x-cache-match"),
        similarity=float(similarity) if similarity else None,
        latency_ms=latency,
        served_group=served,
    )


async def _demo(
    args: argparse.Namespace,
    make_cache: Callable[[], SemanticCache],
    groups: Sequence[Group],
    stream: Sequence[Question],
    threshold_source: str,
    out: TextIO,
) -> int:
    import httpx

    from semanticcache.middleware import SemanticCacheMiddleware

    cache = make_cache()

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
        print(f"threshold: {cache.threshold} ({threshold_source})", file=out)
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
            table = _Table(out, live=live, total=len(stream))
            table.start()
            outcomes: list[Outcome] = []
            started = time.perf_counter()
            async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
                for index, question in enumerate(stream, start=1):
                    if server.should_exit:
                        break
                    outcome = await _send(client, middleware, index, question)
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
        for line in summary(outcomes, llm.calls, seconds, saved_ms):
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
    from semanticcache.cache import SemanticCache
    from semanticcache.embedders.local import LocalEmbedder

    out = sys.stdout
    settings = load_settings(args, environ)
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

        def make_cache() -> SemanticCache:
            # Made inside the event loop that uses its pool.
            return SemanticCache(
                settings=settings, pg_uri=pg.uri, embedder=embedder, threshold=threshold
            )

        try:
            return asyncio.run(_demo(args, make_cache, groups, stream, source, out))
        finally:
            embedder.close()
