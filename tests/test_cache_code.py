"""Code in lookup texts, through SemanticCache on real Postgres: two prompts whose code
differs only in white space (``print`` inside vs after a loop) never share an answer,
whether the lookup reaches it by its exact key or by similarity."""

from __future__ import annotations

import secrets

import pytest

from semanticcache import HashingEmbedder, SemanticCache
from semanticcache._settings import CacheSettings

INSIDE = "Why does this print 3 times?\nfor i in range(3):\n    x = i\n    print(x)\n"
AFTER = "Why does this print 3 times?\nfor i in range(3):\n    x = i\nprint(x)\n"
FENCED_INSIDE = "Why?\n```python\nfor i in range(3):\n    print(i)\n```"
FENCED_AFTER = "Why?\n```python\nfor i in range(3):\nprint(i)\n```"

PAIRS = [(INSIDE, AFTER), (FENCED_INSIDE, FENCED_AFTER)]


@pytest.mark.parametrize(("stored", "query"), PAIRS)
async def test_other_code_is_a_miss(
    pg_uri: str, hashing_cls: type[HashingEmbedder], stored: str, query: str
) -> None:
    embedder = hashing_cls()
    # The hashing embedder places the two programs next to each other.
    a, b = await embedder.embed([stored, query])
    assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.9
    partition = secrets.token_bytes(32)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9) as c:
        await c.put(stored, b"inside", partition=partition)
        result = await c.lookup(query, partition=partition)
        assert result.hit is None
        assert result.reason == "disagreement"
        # The stored program itself, re-spaced where spaces do not matter, still hits.
        again = await c.lookup(stored.replace("\n", "  \r\n"), partition=partition)
        assert again.hit is not None
        assert again.hit.match == "exact"


@pytest.mark.parametrize(("stored", "query"), PAIRS)
async def test_other_code_never_matches_exactly(
    pg_uri: str, hashing_cls: type[HashingEmbedder], stored: str, query: str
) -> None:
    # Without the agreement check only the exact key tells the programs apart: the
    # lookup may find the stored one by similarity, never as the same text.
    settings = CacheSettings(agreement_check=False)
    partition = secrets.token_bytes(32)
    async with SemanticCache(
        pg_uri=pg_uri, embedder=hashing_cls(), settings=settings, threshold=0.9
    ) as c:
        await c.put(stored, b"inside", partition=partition)
        result = await c.lookup(query, partition=partition)
        assert result.hit is not None
        assert result.hit.match == "semantic"
