"""docs/configuration.md is generated from the settings' declarations and kept current."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import semanticcache
from semanticcache._settings import CacheSettings
from semanticcache._settings_doc import render_reference
from semanticcache._settings_kinds import env_name

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"


def test_configuration_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(CacheSettings), (
        "docs/configuration.md is out of date: run python scripts/gen_config_docs.py"
    )


def test_reference_lists_every_variable_once() -> None:
    text = render_reference(CacheSettings)
    for f in dataclasses.fields(CacheSettings):
        assert text.count(f"| `{env_name(f.name)}` |") == 1, f.name


def test_readme_links_the_reference() -> None:
    assert "docs/configuration.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_script_check_mode_accepts_the_current_file() -> None:
    script = ROOT / "scripts" / "gen_config_docs.py"
    # The package this test imports, whether installed or on PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(Path(semanticcache.__file__).parent.parent)}
    ok = subprocess.run(
        [sys.executable, str(script), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
