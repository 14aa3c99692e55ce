"""Running the Postgres binaries, as an unprivileged user when this process is root.

Postgres refuses to run as root, so as root the binaries run as the system user
``semcache-pg`` (created with ``useradd --system`` when missing), which owns the server's
folders; the folders above them, and above the wheel's binaries, get the "search" bit for
others (``o+x``, not read) where it is missing, so that user can reach them. As a normal
user everything runs as that user and nothing is chmod-ed.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from semanticcache.errors import EmbeddedPostgresError

__all__ = [
    "PG_SYSTEM_USER",
    "RunAs",
    "chown",
    "ensure_traversable",
    "run",
    "run_as_for_this_process",
    "write_owned",
]

_log = logging.getLogger("semanticcache.embedded")

PG_SYSTEM_USER = "semcache-pg"
"""The system user the server runs as when this process is root."""


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged account the server runs as when this process is root."""

    uid: int
    gid: int


def run_as_for_this_process() -> RunAs | None:
    """The account to run the binaries as: None (this user) unless this process is root."""
    if os.geteuid() != 0:
        return None
    return _ensure_system_user(PG_SYSTEM_USER)


def _ensure_system_user(name: str) -> RunAs:
    for attempt in range(5):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            pass
        else:
            return RunAs(entry.pw_uid, entry.pw_gid)
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


def ensure_traversable(path: Path) -> None:
    """As root: give others the search bit on ``path`` and its parents where missing."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            _log.warning("adding o+x to %s so the postgres user can reach its files", folder)
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def chown(path: Path, run_as: RunAs) -> None:
    """Give ``path`` (not a symlink's target) to the server's account."""
    os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)


def write_owned(path: Path, text: str, run_as: RunAs | None) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600, owned by the server's account."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    if run_as is not None:
        chown(tmp, run_as)
    tmp.replace(path)


def run(argv: list[str], run_as: RunAs | None, *, timeout: float, what: str) -> None:
    """Run ``argv`` as ``run_as``; raise :class:`EmbeddedPostgresError` with its output."""
    # Output goes to temporary files, not pipes: the server pg_ctl forks could otherwise
    # hold a pipe open and hang the read.
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(  # noqa: S603 - argv from bundled binaries, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                timeout=timeout,
                check=False,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                # As root, root's supplementary groups are dropped with its uid.
                extra_groups=None if run_as is None else [],
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(f"{what} did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise EmbeddedPostgresError(f"{what} could not run: {exc}") from exc
        if done.returncode != 0:
            out.seek(0)
            output = out.read().strip()
            raise EmbeddedPostgresError(f"{what} failed (exit {done.returncode}): {output}")
