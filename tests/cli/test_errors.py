"""Bad arguments and unreachable servers: one line on stderr, exit 2 (usage) or 1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.cli.helpers import PG_URI_ENV, assert_one_error_line, semcache
from tests.servers import free_port


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("nonsense",), "invalid choice: 'nonsense'"),
        (("stats", "--bogus"), "unrecognized arguments: --bogus"),
        (("stats", "--pg-uri", "not a uri"), "--pg-uri is not a Postgres connection string"),
        (
            ("purge",),
            "say what to delete: --scope, --route, --model, --older-than, --expired or --all",
        ),
        (("purge", "--all", "--scope", "x"), "--all takes no other selector"),
        (("purge", "--all", "--route", "/x"), "--all takes no other selector"),
        (("purge", "--route", ""), "--route must be a non-empty string"),
        (("purge", "--model", ""), "--model must be a non-empty string"),
        (("purge", "--route", "/x", "--bogus"), "unrecognized arguments: --bogus"),
        (("purge", "--older-than", "7x"), "not a duration: '7x'"),
        (("demo", "--count", "0"), "--count must be in 1..10000"),
        (("demo", "--latency-ms", "fast"), "not a latency: 'fast'"),
        (("demo", "--threshold", "1.5"), "--threshold must be in (0, 1]"),
        (("calibrate",), "the following arguments are required: --pairs"),
        (("calibrate", "--pairs", "/nonexistent/pairs.jsonl"), "--pairs: no such file"),
        (("calibrate", "--pairs", "x", "--target-fhr", "2"), "--target-fhr must be in [0, 1)"),
        (("serve",), "no upstream to forward to: pass --upstream URL or set"),
        (("serve", "--upstream", "ftp://example.org"), "must be an http:// or https:// URL"),
        (("serve", "--upstream", "http://127.0.0.1:9", "--port", "70000"), "not a TCP port"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    line = assert_one_error_line(semcache(*args), 2)
    assert line.startswith("semcache")
    assert needle in line


@pytest.mark.parametrize("command", ["stats", "purge --expired", "demo --count 1"])
def test_unreachable_postgres_is_one_line_exit_1(command: str) -> None:
    uri = f"postgresql://u:secret@127.0.0.1:{free_port()}/x"
    done = semcache(*command.split(), "--pg-uri", uri)
    line = assert_one_error_line(done, 1)
    assert line.startswith(f"semcache {command.split()[0]}: error: could not connect to Postgres")
    assert "secret" not in done.stderr + done.stdout
    # Which server it tried is said first, password masked.
    assert "postgresql://u:***@127.0.0.1:" in done.stdout + done.stderr


def test_invalid_uri_in_the_environment_is_exit_1() -> None:
    done = semcache("stats", env={PG_URI_ENV: "not a uri"})
    line = assert_one_error_line(done, 1)
    assert "SEMANTIC_CACHE_PG_URI is not a Postgres connection string" in line


def test_malformed_pairs_file_names_the_line(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"a": "x", "b": "y", "same_answer": true}\n\n{"a": "x", "b": 3}\n')
    done = semcache("calibrate", "--pairs", str(pairs), "--pg-uri", "postgresql://u@127.0.0.1/x")
    line = assert_one_error_line(done, 1)
    assert f"{pairs}:3: 'a' and 'b' must be non-empty strings" in line


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "semcache"
    import subprocess

    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    for command in ("demo", "serve", "stats", "purge", "calibrate"):
        assert command in done.stdout


SECRET = "s3cret-Pw"


@pytest.mark.parametrize(
    ("args", "env", "status"),
    [
        # URIs that do not parse: the password is still masked.
        (("stats", "--pg-uri", f"postgresql//u:{SECRET}@h/db"), {}, 2),
        (("stats", "--pg-uri", f"postgresql://u:{SECRET}@h:99999/db"), {}, 2),
        (("stats", "stray", f"postgresql://u:{SECRET}@h/db"), {}, 2),
        (("stats",), {PG_URI_ENV: f"postgresql//u:{SECRET}@h/db"}, 1),
        (("stats",), {PG_URI_ENV: f"host=h password={SECRET} port=x"}, 1),
        (("stats",), {"SEMANTIC_CACHE_REDIS_URI": f"redis//:{SECRET}@h"}, 1),
        (("stats",), {"SEMANTIC_CACHE_REDIS_URI": f"redis://{SECRET}@h:port"}, 1),
        (("stats",), {"SEMANTIC_CACHE_REDIS_URI": f"redis://h:port/0?password={SECRET}"}, 1),
        (("serve", "--upstream", f"ftp://u:{SECRET}@example.org"), {}, 2),
        (("serve", "--upstream", f"http://u:{SECRET}@example.org:port"), {}, 2),
        (("serve", "--upstream", f"http://u:{SECRET}@127.0.0.1:9"), {}, 2),
        (("serve", "--upstream", f"http://{SECRET}@127.0.0.1:9"), {}, 2),
        (("serve", "--upstream", f"http://127.0.0.1:9/v1?api_key={SECRET}"), {}, 2),
    ],
)
def test_no_message_shows_a_credential(
    args: tuple[str, ...], env: dict[str, str], status: int, tmp_path: Path
) -> None:
    # No Postgres URI: a command that got as far as Postgres would start the embedded
    # one in this folder. Nothing may start on a bad argument.
    data = tmp_path / "pg"
    done = semcache(*args, env={"SEMANTIC_CACHE_EMBEDDED_DATA_DIR": str(data), **env})
    assert_one_error_line(done, status)
    assert SECRET not in done.stdout + done.stderr
    assert "***" in done.stderr
    assert not data.exists()


def test_serve_checks_the_embedder_before_starting_postgres(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    done = semcache(
        "serve",
        "--upstream",
        "http://127.0.0.1:9",
        env={
            "SEMANTIC_CACHE_EMBEDDED_DATA_DIR": str(data),
            "SEMANTIC_CACHE_EMBEDDER_TYPE": "openai",
            "SEMANTIC_CACHE_OPENAI_API_KEY": None,
            "OPENAI_API_KEY": None,
        },
    )
    line = assert_one_error_line(done, 1)
    assert "needs an API key" in line or "pip install" in line
    assert "postgres:" not in done.stdout + done.stderr
    assert not data.exists()


def test_calibrate_checks_the_embedder_before_starting_postgres(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"a": "x", "b": "y", "same_answer": true}\n')
    data = tmp_path / "pg"
    done = semcache(
        "calibrate",
        "--pairs",
        str(pairs),
        "--embedder",
        "openai",
        env={
            "SEMANTIC_CACHE_EMBEDDED_DATA_DIR": str(data),
            "SEMANTIC_CACHE_OPENAI_API_KEY": None,
            "OPENAI_API_KEY": None,
        },
    )
    line = assert_one_error_line(done, 1)
    assert "needs an API key" in line or "pip install" in line
    assert "postgres:" not in done.stdout + done.stderr
    assert not data.exists()
