"""What the ``semcache`` commands share: finding Postgres, errors, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from semanticcache._devserver import default_embedded_data_dir
from semanticcache._settings import CacheSettings, mask_connection_string
from semanticcache.errors import ConfigurationError, EmbeddedPostgresError, SemanticCacheError

__all__ = [
    "PG_URI_ENV",
    "Postgres",
    "ProgressBar",
    "UsageError",
    "add_postgres_arguments",
    "format_bytes",
    "format_duration",
    "load_settings",
    "parse_duration",
    "postgres",
]

PG_URI_ENV: Final = "SEMANTIC_CACHE_PG_URI"


class UsageError(SemanticCacheError):
    """Arguments that do not make sense together: exit status 2, like argparse's own."""


def _pg_uri_argument(value: str) -> str:
    try:
        CacheSettings(pg_uri=value)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(PG_URI_ENV, "--pg-uri", 1)) from None
    return value


def add_postgres_arguments(parser: argparse.ArgumentParser) -> None:
    """``--pg-uri`` and ``--data-dir``, the way every command finds its Postgres."""
    parser.add_argument(
        "--pg-uri",
        type=_pg_uri_argument,
        default=None,
        metavar="URI",
        help=f"Postgres with pgvector (default: ${PG_URI_ENV}; when unset, the embedded "
        "development Postgres under --data-dir, reused if running, started if not)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder of the embedded Postgres (default: $SEMANTIC_CACHE_EMBEDDED_DATA_DIR, "
        "else $XDG_CACHE_HOME/fastapi-semcache/postgres)",
    )


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> CacheSettings:
    """The environment's settings, with ``--pg-uri`` (when given) in place of its URI."""
    settings = CacheSettings.from_env(environ)
    if getattr(args, "pg_uri", None):
        settings = dataclasses.replace(settings, pg_uri=args.pg_uri)
    return settings


@dataclass(frozen=True, slots=True)
class Postgres:
    """The Postgres a command talks to."""

    uri: str
    """libpq URI (may hold a password: never print it, print :attr:`shown`)."""
    shown: str
    """The URI with its password masked."""
    embedded: bool
    """Whether it is the embedded development server."""
    started_here: bool
    """Whether this command started it (and stops it when done)."""


@contextlib.contextmanager
def postgres(
    args: argparse.Namespace,
    settings: CacheSettings,
    environ: Mapping[str, str],
    out: TextIO | None,
) -> Iterator[Postgres]:
    """The configured Postgres, or the embedded one (reused if running, else started
    and stopped on exit); one line on ``out`` (unless ``None``) says which."""

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out, flush=True)

    if settings.pg_uri is not None:
        source = "--pg-uri" if getattr(args, "pg_uri", None) else PG_URI_ENV
        shown = mask_connection_string(settings.pg_uri)
        say(f"postgres: {shown} (from {source})")
        yield Postgres(settings.pg_uri, shown, embedded=False, started_here=False)
        return
    # Imported here: the embedded launcher is development-only, POSIX-only machinery.
    try:
        from semanticcache._devserver import EmbeddedPostgres
    except ImportError as exc:  # fcntl / pwd: not on Windows
        raise EmbeddedPostgresError(
            f"the embedded Postgres is not available on this platform ({exc}); "
            f"set {PG_URI_ENV} or pass --pg-uri"
        ) from exc
    data_dir = (
        getattr(args, "data_dir", None)
        or settings.embedded_data_dir
        or default_embedded_data_dir(environ)
    )
    server = EmbeddedPostgres(data_dir)
    started = time.perf_counter()
    uri = server.start()
    try:
        verb = "started" if server.started_here else "reusing the running"
        ms = (time.perf_counter() - started) * 1000
        say(f"postgres: {verb} embedded development Postgres at {mask_connection_string(uri)}")
        say(f"          data {server.data_dir} ({ms:.0f} ms); for development only")
        yield Postgres(
            uri, mask_connection_string(uri), embedded=True, started_here=server.started_here
        )
    finally:
        owned = server.started_here
        server.stop()
        if owned:
            say("postgres: stopped the embedded Postgres")


_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (a bare number is seconds);
    an argparse type."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (accepted: a number with s, m, h, d or w, e.g. 7d)"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"duration too large: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``7d``, ``12h``, ``90s``: the largest unit up to days that divides ``seconds``."""
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def format_bytes(size: int) -> str:
    """``8.2 kB``, ``1.3 MB``: sizes for people (powers of 1024)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at GB


class ProgressBar:
    """A progress bar on a stream: redrawn in place on a terminal, otherwise one line
    per quarter (logs and pipes get a few lines, not thousands of carriage returns)."""

    def __init__(self, label: str, out: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._out = out if out is not None else sys.stderr
        self._tty = self._out.isatty()
        self._width = width
        self._last_quarter = -1

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``."""
        share = done / total if total else 1.0
        if self._tty:
            filled = round(self._width * share)
            bar = "#" * filled + "." * (self._width - filled)
            end = "\n" if done >= total else ""
            self._out.write(f"\r{self._label} [{bar}] {done}/{total}{end}")
            self._out.flush()
            return
        quarter = math.floor(share * 4)
        if quarter > self._last_quarter:
            self._last_quarter = quarter
            print(f"{self._label}: {done}/{total} ({100 * share:.0f} %)", file=self._out)
