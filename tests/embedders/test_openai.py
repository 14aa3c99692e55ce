"""OpenAIEmbedder and OllamaEmbedder through the real openai SDK against a loopback server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import tiktoken

from semanticcache import ConfigurationError, EmbedderError, get_embedder
from semanticcache._embedders.openai import (
    MAX_INPUT_TOKENS,
    MAX_TOKENS_PER_REQUEST,
    OllamaEmbedder,
    OpenAIEmbedder,
)
from semanticcache._settings import CacheSettings
from tests.embedders.conftest import EmbedderFactory
from tests.embedders.fake_provider import FakeProvider, Reply, vector_for
from tests.servers import free_port

KEY = "sk-test-loopback-key"


@pytest.fixture
def make(server: FakeProvider, embedder_factory: EmbedderFactory) -> Callable[..., OpenAIEmbedder]:
    return embedder_factory(
        OpenAIEmbedder, api_key=KEY, base_url=server.base_url, timeout_seconds=5.0
    )


def byte_encoding() -> tiktoken.Encoding:
    """A real tiktoken encoding with one token per byte: token counts are byte counts."""
    return tiktoken.Encoding(
        name="bytes-for-tests",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([b]): b for b in range(256)},
        special_tokens={},
    )


async def test_round_trip_through_the_sdk(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    embedder = make()
    texts = ["What is the capital of France?", "", "third"]
    vectors = await embedder.embed(texts)
    assert vectors == [vector_for(t, 1536) for t in texts]
    assert (embedder.model_id, embedder.dimension) == ("openai:text-embedding-3-small", 1536)
    (request,) = server.requests
    assert request["model"] == "text-embedding-3-small"
    assert request["input"] == texts
    assert request["encoding_format"] == "base64"  # the SDK's compact default
    assert "dimensions" not in request
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_shortened_vectors_are_requested(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    embedder = make(model="text-embedding-3-large", dimensions=256)
    (vector,) = await embedder.embed(["hello"])
    assert len(vector) == 256 == embedder.dimension
    assert server.requests[0]["dimensions"] == 256


async def test_a_429_with_retry_after_is_retried(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    server.replies = [Reply(status=429, headers={"retry-after": "0.05"})]
    assert await make(max_retries=2).embed(["x"]) == [vector_for("x", 1536)]
    assert len(server.requests) == 2


async def test_a_429_without_retries_left_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    server.replies = [Reply(status=429, headers={"retry-after": "0.05"})]
    with pytest.raises(EmbedderError, match="HTTP 429"):
        await make(max_retries=0).embed(["x"])


async def test_a_retry_after_past_the_deadline_gives_up_at_the_deadline(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    server.replies = [Reply(status=429, headers={"retry-after": "30"})]
    with pytest.raises(EmbedderError, match=r"did not answer within 0.3 s \(retries included\)"):
        await make(max_retries=2, timeout_seconds=0.3).embed(["x"])
    assert len(server.requests) == 1


async def test_500s_are_retried_then_reported(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    fast = {"retry-after-ms": "10"}
    server.replies = [Reply(status=500, headers=fast), Reply(status=500, headers=fast)]
    with pytest.raises(EmbedderError, match=r"HTTP 500 .*scripted 500"):
        await make(max_retries=1).embed(["x"])
    assert len(server.requests) == 2


async def test_a_401_is_not_retried_and_the_key_is_not_shown(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    server.replies = [Reply(status=401)]
    with pytest.raises(EmbedderError, match="HTTP 401") as caught:
        await make(max_retries=2).embed(["x"])
    assert KEY not in str(caught.value)
    assert len(server.requests) == 1


async def test_a_slow_answer_past_the_timeout_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    server.replies = [Reply(delay=1.0), Reply(delay=1.0), Reply(delay=1.0)]
    with pytest.raises(EmbedderError, match=r"within 0.2 s|timed out"):
        await make(timeout_seconds=0.2).embed(["x"])


async def test_an_unreachable_server_is_an_embedder_error(
    make: Callable[..., OpenAIEmbedder],
) -> None:
    port = free_port()  # nothing listens on it
    embedder = make(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(EmbedderError, match="could not connect"):
        await embedder.embed(["x"])


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mangle(answer: dict[str, Any]) -> dict[str, Any]:
        answer[key] = value
        return answer

    return mangle


def _item(position: int, **fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mangle(answer: dict[str, Any]) -> dict[str, Any]:
        answer["data"][position].update(fields)
        return answer

    return mangle


def _drop_last(answer: dict[str, Any]) -> dict[str, Any]:
    answer["data"].pop()
    return answer


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b"<html>bad gateway</html>"), "malformed|HTTP"),
        (Reply(body=b'{"data": "oops"}'), "malformed|embeddings"),
        (Reply(body=b"{}"), "malformed|embeddings"),
        (Reply(body=json.dumps({"object": "list", "data": []}).encode()), "malformed"),
        (Reply(mangle=_drop_last), "answered 1 embeddings for 2 inputs"),
        (Reply(mangle=_item(1, index=0)), "wrong indexes"),
        (Reply(mangle=_item(0, index=None)), "malformed"),
        (Reply(mangle=_item(0, embedding="!!not base64!!")), "malformed|length"),
        (Reply(mangle=_item(0, embedding="AACAPw==")), "length 1, expected 1536"),
        (Reply(mangle=_item(1, embedding=[0.5] * 1535)), "length 1535, expected 1536"),
        (Reply(mangle=_item(0, embedding=["a"] * 1536)), "non-number"),
        (Reply(mangle=_item(0, embedding=[0.0] * 1536)), "all-zero"),
        (Reply(body=b'{"data": [{"index": 0, "embedding": [NaN]}]}'), "malformed|for 2|NaN"),
        (Reply(mangle=_set("data", None)), "malformed"),
    ],
)
async def test_malformed_bodies_are_embedder_errors(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder], reply: Reply, message: str
) -> None:
    server.replies = [reply]
    with pytest.raises(EmbedderError, match=message):
        await make(max_retries=0).embed(["a", "b"])


async def test_float_answers_are_accepted_too(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    # A gateway that ignores encoding_format and answers plain floats.
    def as_floats(answer: dict[str, Any]) -> dict[str, Any]:
        for item in answer["data"]:
            item["embedding"] = vector_for("a", 1536)
        return answer

    server.replies = [Reply(mangle=as_floats)]
    assert await make().embed(["a"]) == [vector_for("a", 1536)]


async def test_requests_respect_the_batch_size_and_keep_order(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    texts = [f"text {i}" for i in range(5)]
    vectors = await make(batch_size=2).embed(texts)
    assert vectors == [vector_for(t, 1536) for t in texts]
    assert [r["input"] for r in server.requests] == [texts[0:2], texts[2:4], texts[4:5]]


async def test_requests_stay_within_the_summed_token_limit(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    texts = [chr(ord("a") + i % 26) * MAX_INPUT_TOKENS for i in range(40)]
    vectors = await make(encoding=byte_encoding()).embed(texts)
    assert len(vectors) == 40
    sizes = [sum(len(t) for t in r["input"]) for r in server.requests]
    assert all(size <= MAX_TOKENS_PER_REQUEST for size in sizes)
    assert [len(r["input"]) for r in server.requests] == [36, 4]
    assert [t for r in server.requests for t in r["input"]] == texts


async def test_long_inputs_are_truncated_to_8191_tokens(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    encoding = byte_encoding()
    ascii_text = "a" * 20_000
    # Two bytes a character: a cut at 8191 bytes falls inside one.
    accented = "é" * 5_000
    short = "fits as it is"
    await make(encoding=encoding).embed([ascii_text, accented, short])
    sent = server.requests[0]["input"]
    assert sent[0] == "a" * MAX_INPUT_TOKENS
    assert len(encoding.encode_ordinary(sent[1])) <= MAX_INPUT_TOKENS
    assert accented.startswith(sent[1].rstrip("\ufffd"))
    assert len(sent[1]) >= 4094
    assert sent[2] == short


async def test_without_an_encoding_inputs_are_cut_at_8191_bytes(
    server: FakeProvider,
    make: Callable[..., OpenAIEmbedder],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def offline(name: str) -> tiktoken.Encoding:
        raise ConnectionError("no route to the encoding's host")

    monkeypatch.setattr(tiktoken, "encoding_for_model", offline)
    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with caplog.at_level(logging.WARNING, logger="semanticcache.embedders.openai"):
        await make().embed(["b" * 9000 + "é", "short"])
    assert server.requests[0]["input"] == ["b" * MAX_INPUT_TOKENS, "short"]
    assert "could not be loaded" in caplog.text


async def test_short_inputs_never_load_the_encoding(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(name: str) -> tiktoken.Encoding:
        raise AssertionError("the encoding was loaded for a short input")

    monkeypatch.setattr(tiktoken, "encoding_for_model", forbidden)
    await make().embed(["x" * 2000])
    assert len(server.requests) == 1


async def test_lone_surrogates_are_replaced_before_sending(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    (vector,) = await make().embed(["lone \ud800 surrogate"])
    assert server.requests[0]["input"] == ["lone ? surrogate"]
    assert vector == vector_for("lone ? surrogate", 1536)


async def test_an_empty_batch_sends_nothing(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    assert await make().embed([]) == []
    assert server.requests == []


async def test_a_non_string_is_a_type_error(make: Callable[..., OpenAIEmbedder]) -> None:
    with pytest.raises(TypeError, match="text 0 is int"):
        await make().embed([3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "needs an API key"),
        ({"model": "my-gateway-model"}, "set SEMANTIC_CACHE_OPENAI_DIMENSIONS"),
        ({"model": "text-embedding-ada-002", "dimensions": 256}, "fixed"),
        ({"dimensions": 4000}, "DIMENSIONS=4000 is not available"),
        ({"timeout_seconds": 0.0}, "timeout_seconds must be > 0"),
        ({"batch_size": 2049}, "batch_size must be in 1..2048"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
    ],
)
def test_refuses_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(ConfigurationError, match=message):
        OpenAIEmbedder(**kwargs)


async def test_an_unknown_model_with_dimensions_works(
    server: FakeProvider, make: Callable[..., OpenAIEmbedder]
) -> None:
    embedder = make(model="gateway-embedder", dimensions=8)
    (vector,) = await embedder.embed(["x"])
    assert len(vector) == 8
    assert server.requests[0]["dimensions"] == 8


async def test_the_factory_builds_it_from_settings(server: FakeProvider) -> None:
    settings = CacheSettings(
        embedder_type="openai",
        openai_api_key=KEY,
        openai_base_url=server.base_url,
        openai_dimensions=512,
        embed_timeout_seconds=5.0,
    )
    embedder = get_embedder(settings)
    try:
        assert isinstance(embedder, OpenAIEmbedder)
        assert embedder.timeout_seconds == 5.0
        (vector,) = await embedder.embed(["via settings"])
        assert vector == vector_for("via settings", 512)
    finally:
        await embedder.aclose()


# --- Ollama (OpenAI-compatible API) -----------------------------------------------------


@pytest.fixture
def ollama(
    server: FakeProvider, embedder_factory: EmbedderFactory
) -> Callable[..., OllamaEmbedder]:
    return embedder_factory(OllamaEmbedder, base_url=server.base_url)


async def test_ollama_round_trip(
    server: FakeProvider, ollama: Callable[..., OllamaEmbedder]
) -> None:
    embedder = ollama()
    assert (embedder.model_id, embedder.dimension) == ("ollama:nomic-embed-text", 768)
    vectors = await embedder.embed(["a", "b"])
    assert vectors == [vector_for("a", 768), vector_for("b", 768)]
    request = server.requests[0]
    assert request["model"] == "nomic-embed-text"
    assert "dimensions" not in request


async def test_ollama_sends_long_text_uncounted_but_capped(
    server: FakeProvider, ollama: Callable[..., OllamaEmbedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(name: str) -> tiktoken.Encoding:
        raise AssertionError("Ollama inputs are not tokenized here")

    monkeypatch.setattr(tiktoken, "encoding_for_model", forbidden)
    await ollama(max_input_chars=50_000).embed(["z" * 60_000])
    assert server.requests[0]["input"] == ["z" * 50_000]


async def test_ollama_unknown_models_need_their_dimension(
    server: FakeProvider, ollama: Callable[..., OllamaEmbedder]
) -> None:
    with pytest.raises(ConfigurationError, match="set SEMANTIC_CACHE_OLLAMA_DIMENSIONS"):
        ollama(model="my-model")
    embedder = ollama(model="my-model:latest", dimensions=8)
    await embedder.embed(["x"])
    assert "dimensions" not in server.requests[0]  # stated, not asked for


async def test_ollama_errors_are_embedder_errors(
    server: FakeProvider, ollama: Callable[..., OllamaEmbedder]
) -> None:
    server.replies = [Reply(status=500), Reply(status=500)]
    with pytest.raises(EmbedderError, match="HTTP 500"):
        await ollama(max_retries=0).embed(["x"])


async def test_the_factory_gives_providers_a_deadline_by_default() -> None:
    embedder = get_embedder(CacheSettings(embedder_type="openai", openai_api_key=KEY))
    try:
        assert isinstance(embedder, OpenAIEmbedder)
        assert embedder.timeout_seconds == 30.0
    finally:
        await embedder.aclose()


async def test_the_factory_builds_ollama(server: FakeProvider) -> None:
    settings = CacheSettings(embedder_type="ollama", ollama_base_url=server.base_url)
    embedder = get_embedder(settings)
    try:
        assert isinstance(embedder, OllamaEmbedder)
        assert await embedder.embed(["q"]) == [vector_for("q", 768)]
    finally:
        await embedder.aclose()
