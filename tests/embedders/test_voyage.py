"""VoyageEmbedder through the real voyageai SDK against a loopback Voyage-format server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from semanticcache import ConfigurationError, EmbedderError, get_embedder
from semanticcache._embedders.voyage import MAX_BYTES_PER_REQUEST, VoyageEmbedder
from semanticcache._settings import CacheSettings
from tests.embedders.conftest import EmbedderFactory
from tests.embedders.fake_provider import FakeProvider, Reply, vector_for

KEY = "pa-test-loopback-key"


@pytest.fixture
def make(server: FakeProvider, embedder_factory: EmbedderFactory) -> Callable[..., VoyageEmbedder]:
    return embedder_factory(
        VoyageEmbedder, api_key=KEY, base_url=server.base_url, timeout_seconds=10.0
    )


async def test_round_trip_through_the_sdk(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    embedder = make()
    texts = ["What is the capital of France?", "second", "lone \ud800 surrogate"]
    vectors = await embedder.embed(texts)
    sent = ["What is the capital of France?", "second", "lone ? surrogate"]
    assert vectors == [vector_for(t, 1024) for t in sent]
    assert (embedder.model_id, embedder.dimension) == ("voyage:voyage-3.5", 1024)
    (request,) = server.requests
    assert request["model"] == "voyage-3.5"
    assert request["input"] == sent
    assert request["input_type"] == "query"
    assert request["truncation"] is True
    assert request.get("output_dimension") is None
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_requests_reuse_one_session_and_keep_order(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    embedder = make(batch_size=2)
    texts = [f"t{i}" for i in range(5)]
    assert await embedder.embed(texts) == [vector_for(t, 1024) for t in texts]
    assert [r["input"] for r in server.requests] == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert embedder._session is not None
    assert not embedder._session.closed
    await embedder.aclose()
    assert embedder._session is None


async def test_requests_stay_within_the_byte_budget(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    texts = [c * 50_000 for c in "abcde"]
    await make().embed(texts)
    sizes = [sum(len(t) for t in r["input"]) for r in server.requests]
    assert all(size <= MAX_BYTES_PER_REQUEST for size in sizes)
    assert [len(r["input"]) for r in server.requests] == [2, 2, 1]


async def test_flexible_dimensions_are_requested(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    embedder = make(dimensions=256)
    (vector,) = await embedder.embed(["x"])
    assert len(vector) == 256 == embedder.dimension
    assert server.requests[0]["output_dimension"] == 256


async def test_a_429_is_retried(server: FakeProvider, make: Callable[..., VoyageEmbedder]) -> None:
    server.replies = [Reply(status=429, headers={"retry-after": "1"})]
    assert await make(max_retries=1).embed(["x"]) == [vector_for("x", 1024)]
    assert len(server.requests) == 2


async def test_a_429_without_retries_left_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    server.replies = [Reply(status=429)]
    with pytest.raises(EmbedderError, match=r"HTTP 429 .*scripted 429") as caught:
        await make(max_retries=0).embed(["x"])
    assert len(server.requests) == 1
    assert KEY not in str(caught.value)


async def test_a_500_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    server.replies = [Reply(status=500)]
    with pytest.raises(EmbedderError, match="HTTP 500"):
        await make(max_retries=0).embed(["x"])


async def test_a_slow_answer_past_the_timeout_is_an_embedder_error(
    server: FakeProvider, make: Callable[..., VoyageEmbedder]
) -> None:
    server.replies = [Reply(delay=1.0), Reply(delay=1.0)]
    with pytest.raises(EmbedderError, match=r"within 0.2 s|timed out"):
        await make(timeout_seconds=0.2, max_retries=0).embed(["x"])


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
        (Reply(body=b"<html>bad gateway</html>"), "HTTP 200|malformed"),
        (Reply(body=b'{"data": "oops"}'), "malformed"),
        (Reply(body=b"{}"), "malformed"),
        (Reply(mangle=_drop_last), "1 vector\\(s\\) for 2 text"),
        (Reply(mangle=_item(0, embedding="!!not base64!!")), "malformed|length"),
        (Reply(mangle=_item(1, embedding=[0.5] * 10)), "length 10, expected 1024"),
        (Reply(mangle=_item(0, embedding=[0.0] * 1024)), "all-zero"),
        (Reply(mangle=_item(0, embedding=[None] * 1024)), "non-number"),
    ],
)
async def test_malformed_bodies_are_embedder_errors(
    server: FakeProvider, make: Callable[..., VoyageEmbedder], reply: Reply, message: str
) -> None:
    server.replies = [reply]
    with pytest.raises(EmbedderError, match=message):
        await make(max_retries=0).embed(["a", "b"])


async def test_an_unreachable_server_is_an_embedder_error(
    make: Callable[..., VoyageEmbedder], unused_tcp_port: int
) -> None:
    embedder = make(base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", max_retries=0)
    with pytest.raises(EmbedderError, match=r"could not connect|failed"):
        await embedder.embed(["x"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "needs an API key"),
        ({"model": "voyage-next"}, "set SEMANTIC_CACHE_VOYAGE_DIMENSIONS"),
        ({"dimensions": 300}, "300 is not offered by 'voyage-3.5' \\(256, 512, 1024, 2048\\)"),
        ({"model": "voyage-3-lite", "dimensions": 256}, "only 512"),
        ({"batch_size": 1001}, "batch_size must be in 1..1000"),
        ({"timeout_seconds": -1.0}, "timeout_seconds must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
    ],
)
def test_refuses_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(ConfigurationError, match=message):
        VoyageEmbedder(**kwargs)


async def test_the_factory_builds_it_from_settings(server: FakeProvider) -> None:
    settings = CacheSettings(
        embedder_type="voyage",
        voyage_api_key=KEY,
        voyage_base_url=server.base_url,
        voyage_model="voyage-3-lite",
    )
    embedder = get_embedder(settings)
    try:
        assert isinstance(embedder, VoyageEmbedder)
        assert await embedder.embed(["q"]) == [vector_for("q", 512)]
    finally:
        await embedder.aclose()
