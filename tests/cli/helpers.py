"""Running ``python -m semanticcache`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

PG_URI_ENV = "SEMANTIC_CACHE_PG_URI"


def semcache(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m semanticcache ARGS`` with ``env`` applied over the test's
    environment (``None`` removes a variable); stdin is not a terminal by default."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEMANTIC_CACHE_")}
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.run(
        [sys.executable, "-m", "semanticcache", *args],
        capture_output=True,
        text=True,
        env=environ,
        stdin=stdin,
        timeout=timeout,
        check=False,
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], status: int) -> str:
    """The process failed with ``status`` and exactly one line on stderr, no traceback;
    returns that line."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]
