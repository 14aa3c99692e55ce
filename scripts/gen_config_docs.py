"""Write docs/configuration.md from the declarations in python/semanticcache/_settings.py.

Run it after adding or changing a setting: ``python scripts/gen_config_docs.py``
(``--check`` exits 1 instead when the file is out of date).
"""

from __future__ import annotations

import sys
from pathlib import Path

from semanticcache._settings import CacheSettings
from semanticcache._settings_doc import render_reference

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def main(argv: list[str]) -> int:
    text = render_reference(CacheSettings)
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/gen_config_docs.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
