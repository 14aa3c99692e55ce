"""The public API: what ``semanticcache`` exports, what a bare import loads, and that the
docs import only from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastapi_semcache
import semanticcache

ROOT = Path(__file__).resolve().parents[1]
# Modules whose name has no leading underscore besides the package: the documented ones.
PUBLIC_MODULES = {"semanticcache", "semanticcache.errors", "semanticcache.calibration"}
LAZY = (
    "create_semantic_cache_proxy_app",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "OllamaEmbedder",
    "VoyageEmbedder",
    "CohereEmbedder",
    "HuggingFaceEmbedder",
)


def test_every_exported_name_is_there_and_the_alias_holds_the_same_objects() -> None:
    for name in semanticcache.__all__:
        assert getattr(fastapi_semcache, name) is getattr(semanticcache, name), name
    assert fastapi_semcache.__all__ == semanticcache.__all__
    for name in (
        "CacheSettings",
        "get_cache_settings",
        "Extractor",
        "trusted_extract_scope_from_server_side",
        "client_extract_scope",
        "SemanticCacheMiddleware",
        "EmbeddedPostgres",
        "mask_connection_string",
    ):
        assert name in semanticcache.__all__, name


def test_the_names_of_an_extra_load_on_first_access_and_are_not_in_all() -> None:
    for name in LAZY:
        assert name not in semanticcache.__all__
        assert name in dir(semanticcache)
        assert getattr(fastapi_semcache, name) is getattr(semanticcache, name)
        assert getattr(semanticcache, name).__module__.startswith("semanticcache._")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = semanticcache.no_such_name


def test_a_bare_import_and_a_star_import_load_no_extra() -> None:
    code = (
        "import sys\n"
        "from semanticcache import *\n"
        "import fastapi_semcache\n"
        "heavy = ('aiohttp', 'fastapi', 'openai', 'voyageai', 'cohere', 'torch',"
        " 'onnxruntime', 'sentence_transformers', 'tiktoken', 'prometheus_client')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_only_the_documented_modules_are_public() -> None:
    package = ROOT / "python" / "semanticcache"
    public = {
        "semanticcache." + path.stem
        for path in package.iterdir()
        if not path.name.startswith("_")
        and (path.suffix == ".py" or path.is_dir())
        and path.name != "py.typed"
    }
    assert public | {"semanticcache"} == PUBLIC_MODULES


def test_the_docs_import_only_the_public_modules() -> None:
    pattern = re.compile(r"^\s*(?:from|import)\s+(semanticcache[\w.]*)", re.MULTILINE)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for module in pattern.findall(doc.read_text(encoding="utf-8")):
            assert module in PUBLIC_MODULES, f"{doc.name} imports {module}"
