"""A long prompt (9 MB, under the 10 MiB body cap) is worked on off the event loop: the
requests sharing the loop are not held up while it is embedded, hashed and stored."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import secrets
import time
from typing import Any

import pytest

from semanticcache import CacheKey, HashingEmbedder, SemanticCache, SemanticCacheMiddleware, _layout
from semanticcache._embedders import hashing
from tests.faults import LoopLag
from tests.middleware.conftest import URL, client_for

# A worker thread busy in pure Python already delays the loop's ticks by up to about
# 45 ms on the loaded 2-core test machine (GIL hand-over while the OS schedules other
# work), 10 ms idle; work left on the loop shows as seconds.
MAX_LAG = 0.25


def long_text(size: int = 9_000_000) -> str:
    rng = random.Random(7)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
        for _ in range(20_000)
    ]
    parts: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(words) for _ in range(12)) + ".\n"
        parts.append(sentence)
        length += len(sentence)
    return "".join(parts)


def test_hashing_features_are_those_of_the_joined_words() -> None:
    """The counted features equal the definition's (words, word pairs, and trigrams of
    the words joined by spaces), also across the slices long texts are cut into."""
    rng = random.Random(11)
    alphabet = "ab cd\u03a3\u03c3\u03c2 \u0391\u03a3'\n\t\u00e9_1.,!?xyz\u0130"  # sigmas, dotted I
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        words = hashing._WORD.findall(text.lower())
        joined = f" {' '.join(words)} "
        expected: dict[str, float] = {}
        for feature, weight in [
            *((f"w:{w}", 1.0) for w in words),
            *((f"b:{a} {b}", 0.7) for a, b in itertools.pairwise(words)),
            *((f"c:{joined[i : i + 3]}", 0.35) for i in range(len(joined) - 2)),
        ]:
            expected[feature] = expected.get(feature, 0.0) + weight
        for piece in (16 * 1024, 7):  # the real slice, and slices of a few characters
            hashing_slice = hashing._SLICE
            try:
                hashing._SLICE = piece  # type: ignore[misc]
                counted = hashing._feature_counts(text)
            finally:
                hashing._SLICE = hashing_slice  # type: ignore[misc]
            features = {
                prefix + feature: weight * n
                for prefix, weight, counts in counted
                for feature, n in counts.items()
            }
            assert features.keys() == expected.keys()
            for feature, weight in expected.items():
                assert features[feature] == pytest.approx(weight)


def test_long_texts_are_laid_out_slice_by_slice_with_the_same_result() -> None:
    rng = random.Random(5)
    alphabet = "ab c\t\n\r\u00a0\u2028x`~:  {"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(800)]
    texts += ["```\n  code\n```\n" * 5, "\r\n" * 9, " " * 30, "a\r\nb" * 7]
    for text in texts:
        expected = (
            _layout._WHITESPACE.sub(" ", text).strip(),
            _layout._LINE_BREAK.split(text),
            _layout.layout(text),
        )
        whole = _layout._SLICE
        for piece in (1, 2, 3, 7):
            try:
                _layout._SLICE = piece  # type: ignore[misc]
                got = (_layout._collapse(text), _layout._split_lines(text), _layout.layout(text))
            finally:
                _layout._SLICE = whole  # type: ignore[misc]
            assert got == expected, (text, piece)


def _per_feature_vector(text: str, dimension: int) -> list[float]:
    """The definition, one hash per feature occurrence (as the embedder once ran)."""
    words = hashing._WORD.findall(text.lower())
    joined = f" {' '.join(words)} "
    features = [(f"w:{w}", 1.0) for w in words]
    features += [(f"b:{a} {b}", 0.7) for a, b in itertools.pairwise(words)]
    features += [(f"c:{joined[i : i + 3]}", 0.35) for i in range(len(joined) - 2)]
    vector = [0.0] * dimension
    for feature, weight in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dimension] += weight if value >> 63 else -weight
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector]


def test_hashing_a_long_text_hashes_each_distinct_feature_once() -> None:
    embedder = HashingEmbedder(64)
    text = long_text(400_000)
    assert embedder.embed_one(text) == pytest.approx(_per_feature_vector(text, 64), abs=1e-9)
    # Side by side, best of two: a long text's repeated words, pairs and trigrams are
    # hashed once each (about 3x faster on this text).
    counted, per_feature = [], []
    for _ in range(2):
        start = time.perf_counter()
        embedder.embed_one(text)
        counted.append(time.perf_counter() - start)
        start = time.perf_counter()
        _per_feature_vector(text, 64)
        per_feature.append(time.perf_counter() - start)
    assert 1.5 * min(counted) < min(per_feature)


async def test_a_long_prompt_does_not_hold_up_the_loop(pg_uri: str) -> None:
    text = long_text()
    key = CacheKey(text, scope=secrets.token_hex(4))  # the key's own cost is the caller's
    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension=24)) as cache:
        await cache.lookup("warm up")
        with LoopLag() as lag:
            missed = await cache.lookup(key)
            stored = await cache.put(key, b"long answer")
            hit = await cache.lookup(key)
    assert missed.reason == "miss"
    assert stored is not None
    assert hit.hit is not None
    assert hit.hit.response == b"long answer"
    assert lag.max_gap < MAX_LAG


async def test_a_long_request_through_the_middleware_is_answered(pg_uri: str) -> None:
    text = long_text()
    body = json.dumps(
        {"model": f"m-{secrets.token_hex(4)}", "messages": [{"role": "user", "content": text}]}
    ).encode()
    assert len(body) < 10 * 1024 * 1024

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"answer": "long"}'})

    async with SemanticCache(pg_uri=pg_uri, embedder=HashingEmbedder(dimension=32)) as cache:
        mw = SemanticCacheMiddleware(app, cache=cache)
        headers = {"content-type": "application/json"}
        async with client_for(mw) as client:
            with LoopLag() as lag:
                first = await client.post(URL, content=body, headers=headers)
                await mw.drain()
                again = await client.post(URL, content=body, headers=headers)
    assert first.content == again.content == b'{"answer": "long"}'
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    # The request-body scan, the key (normalised and hashed twice: the second time with
    # its route) and the embedding run off the loop, each in slices.
    assert lag.max_gap < MAX_LAG
