"""Two-stage retrieval: top-k inside the partition (iterative scan), threshold, rejection.

The texts here are labels for hand-placed vectors ("stored 0.99", "row 7"), not
paraphrases: the agreement check (tests/test_cache_agreement.py) is off so that it does
not refuse them for their numbers."""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable, Sequence
from typing import ClassVar

import psycopg
import pytest

from semanticcache import BaseEmbedder, CacheStats, SemanticCache
from semanticcache._key import lookup_digest
from semanticcache.errors import ConfigurationError

DIM = 32


def unit(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    return v


def at_similarity(sim: float, direction: list[float]) -> list[float]:
    """A unit vector with cosine ``sim`` to e0, leaning towards ``direction`` (orthogonal
    to e0, unit length)."""
    s = math.sqrt(1.0 - sim * sim)
    return [sim * e + s * d for e, d in zip(unit(0), direction, strict=True)]


def random_orthogonal(rng: random.Random) -> list[float]:
    v = [0.0] + [rng.gauss(0.0, 1.0) for _ in range(DIM - 1)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


class TableEmbedder(BaseEmbedder):
    """Looks vectors up in a table (unknown texts: e0); vectors are set by the test."""

    def __init__(self) -> None:
        self.model_id = "table-embedder-test"
        self.dimension = DIM
        self.vectors: dict[str, list[float]] = {}
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self.vectors.get(t, unit(0)) for t in texts]


class CheapTableEmbedder(TableEmbedder):
    """The same, declared cheap: embed first, exact probe and search in one statement."""

    embeds_cheaply: ClassVar[bool] = True


@pytest.fixture(params=["exact_first", "embed_first"])
def embedder(request: pytest.FixtureRequest) -> TableEmbedder:
    """Both lookup paths (same model id and vectors, so the same table)."""
    return TableEmbedder() if request.param == "exact_first" else CheapTableEmbedder()


@pytest.fixture
async def seeded(pg_uri: str, embedder: TableEmbedder) -> bytes:
    """A fresh partition holding entries at similarity 0.99, 0.97, 0.93 and 0.80 to e0."""
    partition = secrets.token_bytes(32)
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.5
    ) as c:
        for i, sim in enumerate((0.99, 0.97, 0.93, 0.80), start=1):
            text = f"stored {sim}"
            embedder.vectors[text] = at_similarity(sim, unit(i))
            await c.put(text, f"answer {sim}".encode(), partition=partition)
    return partition


@pytest.mark.parametrize(
    ("threshold", "top_k", "rejection", "reason", "candidates", "best"),
    [
        (0.9, 3, None, "hit", 3, 0.99),
        (0.9, 10, None, "hit", 3, 0.99),  # 0.80 is below the threshold
        (0.5, 10, None, "hit", 4, 0.99),
        (0.9, 1, None, "hit", 1, 0.99),
        (0.995, 5, None, "miss", 0, None),
        (0.9, 3, 0.98, "hit", 3, 0.99),
        (0.9, 3, 0.995, "rejected", 3, 0.99),  # stage 1 passes, stage 2 refuses
    ],
)
async def test_two_stage_retrieval(
    pg_uri: str,
    embedder: TableEmbedder,
    seeded: bytes,
    threshold: float,
    top_k: int,
    rejection: float | None,
    reason: str,
    candidates: int,
    best: float | None,
) -> None:
    async with SemanticCache(
        agreement_check=False,
        pg_uri=pg_uri,
        embedder=embedder,
        threshold=threshold,
        top_k=top_k,
        rejection_threshold=rejection,
    ) as c:
        result = await c.lookup("the query", partition=seeded)
        assert result.reason == reason
        assert result.candidates == candidates
        # Passed or not, the nearest entry's similarity is reported.
        assert result.nearest_similarity == pytest.approx(0.99, abs=1e-5)
        if best is None:
            assert result.best_similarity is None
        else:
            assert result.best_similarity == pytest.approx(best, abs=1e-5)
        if reason == "hit":
            assert result.hit is not None
            assert result.hit.match == "semantic"
            assert result.hit.response == b"answer 0.99"
            assert result.hit.similarity == pytest.approx(0.99, abs=1e-5)
        else:
            assert result.hit is None
        assert await c.get("the query", partition=seeded) == result.hit


async def test_exact_match_wins_and_exact_first_skips_the_embedder(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes
) -> None:
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.9
    ) as c:
        calls = embedder.calls
        result = await c.lookup("stored 0.8", partition=seeded)
        assert result.hit is not None
        assert (result.reason, result.hit.match, result.hit.similarity) == ("hit", "exact", 1.0)
        assert result.hit.response == b"answer 0.8"  # exact wins over the 0.99 neighbour
        assert result.candidates == 0
        # The exact-first path never embeds an exact repeat; the embed-first one does
        # (that is what declaring the embedder cheap allows) and sends one statement.
        assert embedder.calls == calls + (1 if embedder.embeds_cheaply else 0)


async def test_long_texts_are_probed_before_they_are_embedded(
    pg_uri: str, embedder: TableEmbedder
) -> None:
    # Embedding cost grows with the text, the exact probe's does not: past a bound even
    # a cheap embedder waits for the exact probe to miss.
    partition = secrets.token_bytes(32)
    long_text = "why " * 1000
    # No embedding memo: the puts' vectors would spare the lookups their embedding.
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, threshold=0.9, embedding_memo_size=0
    ) as c:
        await c.put(long_text, b"long", partition=partition)
        await c.put("short", b"short", partition=partition)
        calls = embedder.calls
        long_hit = await c.get(long_text, partition=partition)
        assert long_hit is not None
        assert (long_hit.match, long_hit.response) == ("exact", b"long")
        assert embedder.calls == calls
        short_hit = await c.get("short", partition=partition)
        assert short_hit is not None
        assert short_hit.match == "exact"
        assert embedder.calls == calls + (1 if embedder.embeds_cheaply else 0)


def record_statements(
    cache: SemanticCache, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """Append the name of each lookup statement the store runs to ``calls``."""
    for name in ("get_exact", "search", "lookup"):
        original = getattr(cache.store, name)

        def spy(
            *args: object,
            _name: str = name,
            _original: Callable[..., object] = original,
            **kwargs: object,
        ) -> object:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache.store, name, spy)


async def test_store_statements_per_lookup(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # agreement_check off: the seeded texts ("stored 0.99") differ from "the query" in
    # their numbers, which the check refuses; it is not what this test counts.
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, threshold=0.9, agreement_check=False
    ) as c:
        calls: list[str] = []
        record_statements(c, monkeypatch, calls)
        semantic = await c.lookup("the query", partition=seeded)
        exact = await c.lookup("stored 0.8", partition=seeded)
        miss = await c.lookup("the query", partition=secrets.token_bytes(32))
    assert semantic.hit is not None
    assert (semantic.hit.match, semantic.hit.response) == ("semantic", b"answer 0.99")
    assert exact.hit is not None
    assert exact.hit.match == "exact"
    assert (miss.hit, miss.reason) == (None, "miss")
    if embedder.embeds_cheaply:
        # One statement (exact probe + search) per lookup, whatever its outcome.
        assert calls == ["lookup", "lookup", "lookup"]
    else:
        # Exact probe first; the search only after a miss there. The third lookup's
        # text was embedded by the first: with its vector remembered, one statement.
        assert calls == ["get_exact", "search", "get_exact", "lookup"]


# The embed-first path sends one statement whatever the memo holds: only exact-first.
@pytest.mark.parametrize("embedder", ["exact_first"], indirect=True)
async def test_a_remembered_vector_makes_one_statement_on_the_exact_first_path(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not embedder.embeds_cheaply
    calls: list[str] = []
    for memo in (0, 100):
        calls.clear()
        async with SemanticCache(
            pg_uri=pg_uri,
            embedder=embedder,
            threshold=0.9,
            agreement_check=False,
            embedding_memo_size=memo,
        ) as c:
            record_statements(c, monkeypatch, calls)
            first = await c.lookup("the query", partition=seeded)
            again = await c.lookup("the query", partition=seeded)
            exact = await c.lookup("stored 0.8", partition=seeded)
        assert first.hit is not None
        assert (first.hit.match, first.hit.response) == ("semantic", b"answer 0.99")
        assert again == first
        assert exact.hit is not None
        assert (exact.hit.match, exact.hit.response) == ("exact", b"answer 0.8")
        if memo:
            # The second lookup's vector is remembered: the exact probe and the search
            # in one statement, the same hit. "stored 0.8" was never embedded here.
            assert calls == ["get_exact", "search", "lookup", "get_exact"]
        else:
            assert calls == ["get_exact", "search", "get_exact", "search", "get_exact"]


async def test_search_settings_are_session_settings_of_the_pool(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes
) -> None:
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, ef_search=123, pool_max_size=1
    ) as c:
        assert c.store.iterative_scan
        await c.lookup("the query", partition=seeded)
        async with c.store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')"
            )
            assert await cur.fetchone() == ("123", "relaxed_order")
    async with await psycopg.AsyncConnection.connect(pg_uri) as other:
        # other sessions of the database keep pgvector's defaults
        await other.execute("SELECT '[1]'::vector")  # loads the library
        cur = await other.execute(
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')"
        )
        assert await cur.fetchone() == ("40", "off")


async def test_a_small_partition_still_gets_its_top_k(pg_uri: str, embedder: TableEmbedder) -> None:
    """2% of 5,000 rows in the partition, the other 98% nearer to the query: without
    pgvector's iterative scan the HNSW candidates would all be filtered away.

    For so small a partition the planner rightly prefers the (partition, text_digest)
    btree and a sort; ``enable_sort = off`` on the cache's one pooled connection makes it
    take the HNSW index, the plan a partition of a large table gets.
    """
    rng = random.Random(7)
    small, crowd = secrets.token_bytes(32), secrets.token_bytes(32)
    rows = []
    for i in range(5000):
        in_small = i % 50 == 0
        sim = rng.uniform(0.6, 0.9) if in_small else rng.uniform(0.97, 0.999)
        vector = at_similarity(sim, random_orthogonal(rng))
        text = f"row {i}"
        rows.append((small if in_small else crowd, lookup_digest(text), text, vector, sim))
    async with SemanticCache(
        agreement_check=False,
        pg_uri=pg_uri,
        embedder=embedder,
        threshold=0.5,
        top_k=5,
        ef_search=40,
        pool_min_size=1,
        pool_max_size=1,
    ) as c:
        async with c.store.pool.connection() as conn:
            await conn.execute("SET enable_sort = off")  # session level: kept by the pool
            cur = conn.cursor()
            copy_sql = (
                f"COPY {c.table} (partition, text_digest, lookup_text, embedding, response) "
                "FROM STDIN"
            )
            async with cur.copy(copy_sql) as copy:
                for partition, digest, text, vector, _ in rows:
                    literal = "[" + ",".join(repr(x) for x in vector) + "]"
                    await copy.write_row((partition, digest, text, literal, text.encode()))
            await conn.execute(f"ANALYZE {c.table}")
            # The control: the same filtered query without the iterative scan starves.
            query = (
                f"SELECT id FROM {c.table} WHERE partition = %s "
                "ORDER BY embedding <=> %s::vector LIMIT 5"
            )
            args = (small, "[" + ",".join(repr(x) for x in unit(0)) + "]")
            cur = await conn.execute("EXPLAIN " + query, args)
            plan = "\n".join(r[0] for r in await cur.fetchall())
            assert "_hnsw" in plan
            async with conn.transaction():
                await conn.execute("SET LOCAL hnsw.iterative_scan = off")
                cur = await conn.execute(query, args)
                assert len(await cur.fetchall()) < 5
        result = await c.lookup("the query", partition=small)
        assert result.reason == "hit"
        assert result.candidates == 5
        expected_best = max(r[4] for r in rows if r[0] == small)
        assert result.best_similarity == pytest.approx(expected_best, abs=0.05)
        assert result.hit is not None
        assert result.hit.response.startswith(b"row ")
        assert int(result.hit.response.split()[1]) % 50 == 0  # from the small partition


async def test_relaxed_order_results_are_sorted(pg_uri: str, embedder: TableEmbedder) -> None:
    partition = secrets.token_bytes(32)
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.0, top_k=20
    ) as c:
        rng = random.Random(3)
        for i in range(20):
            text = f"sorted {i}"
            embedder.vectors[text] = at_similarity(rng.uniform(0.1, 0.95), random_orthogonal(rng))
            await c.put(text, b"x", partition=partition)
        vector = unit(0)
        matches = (await c.store.search(partition, vector, 0.0, k=20)).matches
        sims = [m.similarity for m in matches]
        assert len(sims) == 20
        assert sims == sorted(sims, reverse=True)
        # only the best candidate ships its response
        assert [bool(m.response) for m in matches] == [True] + [False] * 19


async def test_a_missed_lookup_and_its_put_embed_once(pg_uri: str, embedder: TableEmbedder) -> None:
    partition = secrets.token_bytes(32)
    embedder.vectors["new question"] = unit(3)
    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.9) as c:
        calls = embedder.calls
        assert (await c.lookup("new question", partition=partition)).reason == "miss"
        assert await c.put("new question", b"answer", partition=partition) is not None
        assert embedder.calls == calls + 1  # the put reused the lookup's vector
        hit = await c.get("new question", partition=partition)
        assert hit is not None
        assert hit.response == b"answer"


async def test_a_paraphrase_asked_again_is_not_embedded_again(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes
) -> None:
    # agreement_check off: the seeded texts hold numbers "the query" does not.
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, threshold=0.9, agreement_check=False
    ) as c:
        calls = embedder.calls
        for _ in range(3):
            result = await c.lookup("the query", partition=seeded)
            assert result.hit is not None
            assert result.hit.match == "semantic"
        assert embedder.calls == calls + 1


async def test_embedding_memo_is_bounded_and_can_be_off(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes
) -> None:
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, threshold=0.9, embedding_memo_size=2
    ) as c:
        for text in ("q1", "q2", "q3", "q1"):  # q1 was evicted by q3
            await c.lookup(text, partition=seeded)
        calls = embedder.calls
        await c.lookup("q3", partition=seeded)
        assert embedder.calls == calls
    async with SemanticCache(
        pg_uri=pg_uri, embedder=embedder, threshold=0.9, embedding_memo_size=0
    ) as c:
        calls = embedder.calls
        await c.lookup("q1", partition=seeded)
        await c.lookup("q1", partition=seeded)
        assert embedder.calls == calls + 2
    with pytest.raises(ConfigurationError, match="embedding_memo_size"):
        SemanticCache(pg_uri=pg_uri, embedder=embedder, embedding_memo_size=-1)


async def test_the_memo_never_crosses_texts(pg_uri: str, embedder: TableEmbedder) -> None:
    """Two spellings that share an entry (same normalized text) keep their own vectors."""
    partition = secrets.token_bytes(32)
    embedder.vectors["Paris?"] = unit(1)
    embedder.vectors["Paris?  "] = unit(2)

    async def stored_vector(c: SemanticCache) -> list[tuple[object, ...]]:
        async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
            cur = await conn.execute(
                f"SELECT embedding::text FROM {c.table} WHERE partition = %s", (partition,)
            )
            return await cur.fetchall()

    def text_of(v: list[float]) -> str:
        return "[" + ",".join(str(int(x)) for x in v) + "]"

    async with SemanticCache(pg_uri=pg_uri, embedder=embedder, threshold=0.99) as c:
        await c.put("Paris?", b"one", partition=partition)
        assert await stored_vector(c) == [(text_of(unit(1)),)]
        calls = embedder.calls
        await c.put("Paris?  ", b"two", partition=partition)  # the same entry, replaced
        assert embedder.calls == calls + 1
        assert await stored_vector(c) == [(text_of(unit(2)),)]


def _counts(stats: CacheStats, outcome: str) -> list[int]:
    return list(stats.nearest_similarity.get(outcome, (0,) * 100))


async def test_nearest_similarity_histogram(
    pg_uri: str, embedder: TableEmbedder, seeded: bytes
) -> None:
    """Every lookup that ran a search is counted under its outcome, in the bucket of
    its nearest entry, in Postgres for every process; exact hits and empty partitions
    are not."""
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.995
    ) as c:
        before = await c.stats()
        embedder.vectors["close"] = at_similarity(0.999, unit(5))
        await c.put("close", b"close answer", partition=seeded)
        assert (await c.lookup("the query", partition=seeded)).reason == "hit"  # 0.999
        for _ in range(2):
            missed = await c.lookup("the query", partition=secrets.token_bytes(32))
            assert (missed.reason, missed.nearest_similarity) == ("miss", None)
        exact = await c.lookup("close", partition=seeded)
        assert exact.hit is not None
        assert exact.hit.match == "exact"
        assert exact.nearest_similarity == 1.0
        async with SemanticCache(
            agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.9995
        ) as strict:  # another cache: another process, as far as the counts go
            missed = await strict.lookup("the query", partition=seeded)
            assert missed.reason == "miss"
            assert missed.nearest_similarity == pytest.approx(0.999, abs=1e-5)
        after = await c.stats()  # flushes this cache's counts; strict flushed at close
    hits = [n - b for n, b in zip(_counts(after, "hit"), _counts(before, "hit"), strict=True)]
    misses = [n - b for n, b in zip(_counts(after, "miss"), _counts(before, "miss"), strict=True)]
    assert len(hits) == 100
    assert hits[99] == 1  # 0.999: the last bucket
    assert sum(hits) == 1  # the exact hit and the empty partitions are not counted
    assert misses[99] == 1
    assert sum(misses) == 1


async def test_a_zero_vector_stored_by_hand_is_not_counted(
    pg_uri: str, embedder: TableEmbedder
) -> None:
    """A row written past the cache (the store takes any finite vector) with the zero
    vector has no direction: its similarity is NaN. The lookup still answers, a miss,
    and the NaN lands in no histogram bucket."""
    partition = secrets.token_bytes(32)
    async with SemanticCache(
        agreement_check=False, pg_uri=pg_uri, embedder=embedder, threshold=0.5
    ) as c:
        await c.store.put_entry(partition, b"\x00" * 32, "zero", [0.0] * len(unit(0)), b"x")
        before = await c.stats()
        result = await c.lookup("the query", partition=partition)
        assert result.reason == "miss"
        assert result.nearest_similarity is not None
        assert math.isnan(result.nearest_similarity)
        after = await c.stats()
    assert after.nearest_similarity == before.nearest_similarity
