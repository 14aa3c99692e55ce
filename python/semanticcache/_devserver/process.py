"""A server process seen from outside: its pid file, its liveness, its folder's lock.

``postmaster.pid`` says which server runs on a data folder; a pid is trusted only while
it is a live postgres serving that folder (pids get reused). The file lock serializes
starting and stopping one folder across processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from semanticcache.errors import EmbeddedPostgresError

__all__ = ["PidFile", "file_lock", "free_port", "is_postmaster_of", "pid_alive", "read_pid_file"]


@dataclass(frozen=True, slots=True)
class PidFile:
    """What ``postmaster.pid`` says about a (possibly dead) server."""

    pid: int
    port: int | None
    socket_dir: str
    listen_addr: str


def read_pid_file(path: Path) -> PidFile | None:
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
        return PidFile(pid=0, port=None, socket_dir="", listen_addr="")
    port_text = line(3)
    return PidFile(
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=line(4).split(",")[0].strip(),
        listen_addr=line(5),
    )


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (whoever owns it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live postgres serving ``pgdata`` (pids get reused)."""
    if not pid_alive(pid):
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


def free_port(host: str | None) -> int:
    """A TCP port free on ``host`` (127.0.0.1 when None) right now."""
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host or "127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting up to ``timeout`` seconds."""
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
