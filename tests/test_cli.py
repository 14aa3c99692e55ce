"""``semcache demo`` / ``python -m semanticcache demo`` run as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PG_URI_ENV = "SEMANTIC_CACHE_PG_URI"


def _run(*args: str, env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "semanticcache", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def _assert_round_trip(stdout: str) -> None:
    lines = stdout.splitlines()
    assert any("put    'What is the capital of France?'" in line for line in lines)
    assert any(
        "get    'What is the capital of France?' -> HIT exact, similarity 1.000" in line
        for line in lines
    )
    assert any(
        "get    'what is the capital of France, please' -> HIT semantic, similarity 0.9" in line
        for line in lines
    )
    assert any("get    'How do I bake sourdough bread?' -> MISS" in line for line in lines)
    # every step is numbered and timed
    assert all(line.split(". ", 1)[0].isdigit() and line.endswith(" ms]") for line in lines)


def test_demo_against_the_configured_postgres(pg_uri: str) -> None:
    done = _run("demo", env_overrides={PG_URI_ENV: pg_uri})
    assert done.returncode == 0, done.stderr
    assert "using SEMANTIC_CACHE_PG_URI (127.0.0.1:" in done.stdout
    assert "password" not in done.stdout
    _assert_round_trip(done.stdout)
    assert "development mode" not in done.stderr
    assert "embedded" not in done.stdout


def test_demo_starts_and_stops_the_embedded_postgres(tmp_path: Path) -> None:
    done = _run("demo", env_overrides={PG_URI_ENV: None, "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    data_dir = tmp_path / "fastapi-semcache" / "postgres"
    assert "WARNING: development mode" in done.stderr
    assert str(data_dir) in done.stderr
    assert "postgres: started embedded Postgres at 127.0.0.1:" in done.stdout
    _assert_round_trip(done.stdout)
    assert done.stdout.splitlines()[-1].startswith(
        f"{len(done.stdout.splitlines())}. postgres: stopped the embedded Postgres"
    )
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_unreachable_postgres_is_one_error_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _run("demo", env_overrides={PG_URI_ENV: f"postgresql://u:secret@127.0.0.1:{port}/x"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("semcache: error: could not connect to Postgres")
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stderr + done.stdout


def test_invalid_uri_is_one_error_line() -> None:
    done = _run("demo", env_overrides={PG_URI_ENV: "not a uri"})
    assert done.returncode == 1
    assert done.stderr.startswith("semcache: error: SEMANTIC_CACHE_PG_URI is not a Postgres")
    assert done.stderr.count("\n") == 1


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "semcache"
    done = subprocess.run(
        [str(script), "demo", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert "SEMANTIC_CACHE_PG_URI" in done.stdout


def test_missing_command_is_a_usage_error() -> None:
    done = _run(env_overrides={})
    assert done.returncode == 2
    assert "usage: semcache" in done.stderr
