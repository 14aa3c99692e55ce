"""CohereEmbedder through the real cohere SDK against a loopback Cohere-format server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from semanticcache import ConfigurationError, EmbedderError, get_embedder
from semanticcache._embedders.cohere import CohereEmbedder
from semanticcache._settings import CacheSettings
from tests.embedders.conftest import EmbedderFactory
from tests.embedders.fake_provider import FakeProvider, Reply, vector_for

KEY = "co-test-loopback-key"


@pytest.fixture
def make(server: FakeProvider, embedder_factory: EmbedderFactory) -> Callable[..., CohereEmbedder]:
    return embedder_factory(
        CohereEmbedder, api_key=KEY, base_url=server.root_url, timeout_seconds=10.0
    )


async def test_round_trip_through_the_sdk(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    embedder = make()
    texts = ["What is the capital of France?", "second", "lone \ud800 surrogate"]
    vectors = await embedder.embed(texts)
    sent = ["What is the capital of France?", "second", "lone ? surrogate"]
    assert vectors == [vector_for(t, 1536) for t in sent]
    assert (embedder.model_id, embedder.dimension) == ("cohere:embed-v4.0", 1536)
    (request,) = server.requests
    assert request["model"] == "embed-v4.0"
    assert request["texts"] == sent
    assert request["input_type"] == "search_query"
    assert request["embedding_types"] == ["float"]
    assert request["truncate"] == "END"
    assert "output_dimension" not in request
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_requests_hold_at_most_batch_size_texts(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    texts = [f"t{i}" for i in range(100)]
    assert await make().embed(texts) == [vector_for(t, 1536) for t in texts]
    assert [len(r["texts"]) for r in server.requests] == [96, 4]


async def test_shorter_vectors_are_requested(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    embedder = make(dimensions=512)
    (vector,) = await embedder.embed(["x"])
    assert len(vector) == 512 == embedder.dimension
    assert server.requests[0]["output_dimension"] == 512


async def test_a_429_with_retry_after_is_retried(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    server.replies = [Reply(status=429, headers={"retry-after-ms": "50"})]
    assert await make(max_retries=2).embed(["x"]) == [vector_for("x", 1536)]
    assert len(server.requests) == 2


async def test_a_429_without_retries_left_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    server.replies = [Reply(status=429)]
    with pytest.raises(EmbedderError, match=r"HTTP 429 .*scripted 429") as caught:
        await make(max_retries=0).embed(["x"])
    assert KEY not in str(caught.value)


async def test_500s_are_retried_then_reported(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    fast = {"retry-after-ms": "10"}
    server.replies = [Reply(status=500, headers=fast), Reply(status=500, headers=fast)]
    with pytest.raises(EmbedderError, match="HTTP 500"):
        await make(max_retries=1).embed(["x"])
    assert len(server.requests) == 2


async def test_a_retry_after_past_the_deadline_gives_up_at_the_deadline(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    server.replies = [Reply(status=429, headers={"retry-after": "30"})]
    with pytest.raises(EmbedderError, match=r"did not answer within 0.3 s"):
        await make(max_retries=2, timeout_seconds=0.3).embed(["x"])


async def test_a_slow_answer_past_the_timeout_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., CohereEmbedder]
) -> None:
    server.replies = [Reply(delay=1.0), Reply(delay=1.0), Reply(delay=1.0)]
    with pytest.raises(EmbedderError, match=r"within 0.2 s|timed out"):
        await make(timeout_seconds=0.2).embed(["x"])


def _set_floats(value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mangle(answer: dict[str, Any]) -> dict[str, Any]:
        answer["embeddings"]["float"] = value
        return answer

    return mangle


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b"<html>bad gateway</html>"), "malformed|HTTP"),
        (Reply(body=b'{"embeddings": "oops"}'), "malformed"),
        (Reply(body=b"{}"), "malformed"),
        (Reply(mangle=_set_floats(None)), "malformed"),
        (Reply(mangle=_set_floats([[0.5] * 1536])), "1 vector\\(s\\) for 2 text"),
        (Reply(mangle=_set_floats([[0.5] * 1536, [0.5] * 3])), "length 3, expected 1536"),
        (Reply(mangle=_set_floats([[0.5] * 1536, [0.0] * 1536])), "all-zero"),
    ],
)
async def test_malformed_bodies_are_embedder_errors(
    server: FakeProvider, make: Callable[..., CohereEmbedder], reply: Reply, message: str
) -> None:
    server.replies = [reply]
    with pytest.raises(EmbedderError, match=message):
        await make(max_retries=0).embed(["a", "b"])


async def test_an_unreachable_server_is_an_embedder_error(
    make: Callable[..., CohereEmbedder], unused_tcp_port: int
) -> None:
    embedder = make(base_url=f"http://127.0.0.1:{unused_tcp_port}", max_retries=0)
    with pytest.raises(EmbedderError, match="could not connect"):
        await embedder.embed(["x"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "needs an API key"),
        ({"model": "embed-next"}, "set SEMANTIC_CACHE_COHERE_DIMENSIONS"),
        ({"dimensions": 300}, "300 is not offered by 'embed-v4.0' \\(256, 512, 1024, 1536\\)"),
        ({"model": "embed-english-v3.0", "dimensions": 256}, "\\(1024\\)"),
        ({"batch_size": 97}, "batch_size must be in 1..96"),
        ({"timeout_seconds": 0.0}, "timeout_seconds must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
    ],
)
def test_refuses_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(ConfigurationError, match=message):
        CohereEmbedder(**kwargs)


async def test_the_factory_builds_it_from_settings(server: FakeProvider) -> None:
    settings = CacheSettings(
        embedder_type="cohere",
        cohere_api_key=KEY,
        cohere_base_url=server.root_url,
        cohere_model="embed-english-v3.0",
    )
    embedder = get_embedder(settings)
    try:
        assert isinstance(embedder, CohereEmbedder)
        assert await embedder.embed(["q"]) == [vector_for("q", 1024)]
    finally:
        await embedder.aclose()
