"""The package reports the version it is built as, and it sorts above the releases of the
pure-Python ``fastapi-semcache`` it succeeds on PyPI (0.4.x)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import fastapi_semcache
import semanticcache

ROOT = Path(__file__).resolve().parents[1]


def release(version: str) -> tuple[int, ...]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    assert match is not None, f"not a plain release version: {version!r}"
    return tuple(int(part) for part in match.groups())


def test_the_version_is_the_one_the_wheel_is_built_as() -> None:
    # maturin takes the distribution's version from the Cargo workspace.
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    assert semanticcache.__version__ == cargo["workspace"]["package"]["version"]
    assert fastapi_semcache.__version__ == semanticcache.__version__


def test_the_version_succeeds_the_last_pure_python_release() -> None:
    assert release(semanticcache.__version__) > release("0.4.6")
    assert release(semanticcache.__version__) >= (0, 5, 0)
