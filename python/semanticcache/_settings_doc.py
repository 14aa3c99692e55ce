"""The configuration reference: docs/configuration.md rendered from the settings' declarations.

``python scripts/gen_config_docs.py`` writes it; a test fails when the file is stale.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, fields
from typing import Any

from semanticcache._settings_kinds import env_name
from semanticcache._settings_spec import spec

__all__ = ["render_reference"]


def _default_text(f: Field[Any]) -> str:
    declared = spec(f)
    if declared.default_doc is not None:
        return declared.default_doc
    default = f.default
    assert default is not MISSING
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return ", ".join(default) if default else "none"
    return f"`{default}`"


def render_reference(cls: type) -> str:
    """The configuration reference (Markdown) of the dataclass ``cls``'s settings."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from python/semanticcache/_settings.py by scripts/gen_config_docs.py;",
        "     edit the declarations there and run the script, not this file. -->",
        "",
        "Every setting is a `SEMANTIC_CACHE_*` environment variable, read once by",
        "`semanticcache.get_cache_settings()` (or `CacheSettings.from_env()`), and",
        "a keyword argument of `CacheSettings` of the same name in lower case. Values are",
        "stripped; an empty variable counts as unset. An invalid value stops start-up with",
        "a `ConfigurationError` that names the variable and its accepted values; passwords",
        "in connection strings are masked and keys are never shown.",
        "",
        "| Variable | Type | Default | Accepted | Meaning |",
        "|---|---|---|---|---|",
    ]
    for f in fields(cls):
        declared = spec(f)
        doc = declared.doc
        if declared.fallback:
            doc += f" Read from `{declared.fallback}` when unset."
        cells = (
            f"`{env_name(f.name)}`",
            declared.kind.type_name,
            _default_text(f),
            declared.kind.describe(),
            doc,
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
