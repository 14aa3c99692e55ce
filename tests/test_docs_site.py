"""The documentation site (mkdocs.yml): its hook points links to files outside docs/ at
the repository, and the whole site builds under ``--strict`` (broken links and anchors,
pages left out of the nav) where MkDocs is installed (the ``docs`` extra)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripts.mkdocs_hooks import rewrite_repo_links

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REPO = "https://github.com/o/r"


def rewrite(markdown: str, page: str = "page.md") -> str:
    return rewrite_repo_links(markdown, DOCS / page, DOCS, ROOT, REPO)


def test_a_link_out_of_docs_points_at_the_repository() -> None:
    assert rewrite("see [the log](../CHANGELOG.md#migrating-from-04x).") == (
        f"see [the log]({REPO}/blob/main/CHANGELOG.md#migrating-from-04x)."
    )
    assert rewrite('[card](../python/semanticcache/_verifier/data/MODEL_CARD.md "card")') == (
        f'[card]({REPO}/blob/main/python/semanticcache/_verifier/data/MODEL_CARD.md "card")'
    )
    assert rewrite("[tests](../tests/metrics)") == f"[tests]({REPO}/tree/main/tests/metrics)"
    # From a page in a folder of docs/: relative to that folder.
    assert rewrite("[x](../../README.md)", "sub/page.md") == f"[x]({REPO}/blob/main/README.md)"


@pytest.mark.parametrize(
    "markdown",
    [
        "[cache](cache.md#retrieval)",
        "[dash](grafana/semcache-dashboard.json)",
        "[nowhere](../no-such-file.md)",
        "[up](../../etc/passwd)",
        "[web](https://example.com/x.md)",
        "[here](#a-heading)",
        "[abs](/CHANGELOG.md)",
    ],
)
def test_other_links_stay_as_written(markdown: str) -> None:
    assert rewrite(markdown) == markdown


def test_code_blocks_are_left_alone() -> None:
    text = "```md\n[log](../CHANGELOG.md)\n```\n~~~~\n```\n[log](../CHANGELOG.md)\n~~~~\n"
    assert rewrite(text) == text
    after = rewrite(text + "[log](../CHANGELOG.md)\n")
    assert after.endswith(f"[log]({REPO}/blob/main/CHANGELOG.md)\n")


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert pages
    missing = [page for page in pages if f": {page}\n" not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="MkDocs is not installed (the docs extra)"
)
def test_the_site_builds_strict(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "grafana" / "semcache-dashboard.json").is_file()


def markdown_pitfalls(text: str) -> list[str]:
    """Lines that GitHub renders as meant and Python-Markdown (MkDocs) does not: a list
    right after a paragraph line (it joins the paragraph), a list nested by fewer than 4
    spaces (it comes out flat), a fenced block indented into a list item (it comes out
    as text)."""
    problems: list[str] = []
    fence: str | None = None
    previous = ""
    item = re.compile(r"^(\s*)(?:[-*+]|\d+\.) ")
    for number, line in enumerate(text.splitlines(), 1):
        opened = re.match(r"^(\s*)(`{3,}|~{3,})", line)
        if fence is not None:
            if opened and line.strip().startswith(fence):
                fence = None
            previous = line
            continue
        if opened:
            fence = opened.group(2)
            if opened.group(1):
                problems.append(f"{number}: an indented code fence")
        listed = item.match(line)
        if listed and 0 < len(listed.group(1)) < 4:
            problems.append(f"{number}: a list nested by {len(listed.group(1))} spaces")
        if (
            listed
            and not listed.group(1)
            and previous.strip()
            and not item.match(previous)
            and not previous.startswith((" ", "|", "#", "<"))
        ):
            problems.append(f"{number}: a list right after a paragraph line")
        previous = line
    return problems


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: p.name)
def test_pages_render_in_mkdocs_as_on_github(page: Path) -> None:
    assert markdown_pitfalls(page.read_text(encoding="utf-8")) == []


def test_the_pitfalls_are_found() -> None:
    text = "Text:\n- item\n\n- a\n  - b\n\n- c\n\n  ```python\n  x\n  ```\n"
    assert markdown_pitfalls(text) == [
        "2: a list right after a paragraph line",
        "5: a list nested by 2 spaces",
        "9: an indented code fence",
    ]
    assert markdown_pitfalls("Text:\n\n- a\n    - b\n\n```\n- not a list\n```\n") == []
