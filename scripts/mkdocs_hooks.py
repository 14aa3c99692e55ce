"""MkDocs hooks (mkdocs.yml ``hooks:``) for the documentation site.

The pages link to files outside docs/ (the changelog, a model card) by relative paths,
so that they work where the repository is browsed. The site holds docs/ only: such a
link is rewritten to the file's address in the repository (``repo_url``). A link whose
target does not exist is left as it is, for MkDocs's own check to report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

__all__ = ["on_page_markdown", "rewrite_repo_links"]

BRANCH: Final = "main"
ROOT: Final = Path(__file__).resolve().parent.parent

# An inline link or image target: ](target) or ](target "title"), no white space inside.
_LINK: Final = re.compile(r"(?P<open>\]\()(?P<target>[^)\s]+)(?P<rest>(?:\s+\"[^\"]*\")?\))")
_FENCE: Final = re.compile(r"^\s*(`{3,}|~{3,})")
_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _rewrite_target(target: str, page_dir: Path, docs_dir: Path, root: Path, repo: str) -> str:
    if _SCHEME.match(target) or target.startswith(("#", "/")):
        return target
    path, sep, anchor = target.partition("#")
    resolved = (page_dir / path).resolve()
    if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(root):
        return target
    if not resolved.exists():
        return target
    kind = "tree" if resolved.is_dir() else "blob"
    relative = resolved.relative_to(root).as_posix()
    return f"{repo.rstrip('/')}/{kind}/{BRANCH}/{relative}{sep}{anchor}"


def rewrite_repo_links(markdown: str, page: Path, docs_dir: Path, root: Path, repo: str) -> str:
    """``markdown`` (of the page file ``page``) with its relative links to existing files
    of ``root`` outside ``docs_dir`` pointing at ``repo`` instead; code blocks untouched."""
    docs_dir, root = docs_dir.resolve(), root.resolve()
    page_dir = page.resolve().parent
    out: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            out.append(line)
            continue
        if opened:
            fence = opened.group(1)
            out.append(line)
            continue
        out.append(
            _LINK.sub(
                lambda m: (
                    m["open"]
                    + _rewrite_target(m["target"], page_dir, docs_dir, root, repo)
                    + m["rest"]
                ),
                line,
            )
        )
    return "".join(out)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    repo = config["repo_url"]
    if not repo or page.file.abs_src_path is None:
        return markdown
    return rewrite_repo_links(
        markdown, Path(page.file.abs_src_path), Path(config["docs_dir"]), ROOT, repo
    )
