"""The plan policy: which lookup SQL serves a partition, from the table's statistics.

``INDEX``: one cached plan that is the HNSW scan; ``EXACT``: one cached plan that reads
the partition and keeps the nearest; ``CUSTOM``: the lookup function, planned for each
lookup's partition (see :mod:`semanticcache._storage.lookup_sql`). A table whose
partitions all get the same answer gets one verdict. In a skewed table, each partition
the statistics list among the most common gets the cached plan of its size, and every
other one the cached plan of the size the planner would give it: the lookup function,
planned on each call, serves only a table without statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql

from semanticcache._storage import wire
from semanticcache._storage.wire import ReadStatement

__all__ = [
    "CUSTOM",
    "EXACT",
    "INDEX",
    "PlanPolicy",
    "connection_options",
    "plan_verdict",
    "search_settings",
    "set_config_sql",
]

CUSTOM: Final = "custom"
INDEX: Final = "index"
EXACT: Final = "exact"

# The statistics are read again this often.
_PLAN_POLICY_SECONDS: Final = 60.0
# After an ANALYZE sent to the primary: when a replica's statistics are read again.
_STATISTICS_RETRY_SECONDS: Final = 1.0
# The HNSW scan serves a partition whose rows times its share of the table reach this;
# an exact scan of the partition is cheaper below (benches/bench_plans.py).
_INDEX_MIN_ROWS: Final = 300.0
# reltuples scaled to the heap's current size, as the planner scales it: a table that
# grew since its last ANALYZE is counted at its size now.
_PARTITION_STATS: Final = ReadStatement(
    "SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples::float8 "
    "/ c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::float8) "
    "ELSE c.reltuples::float8 END, s.n_distinct::float8, s.most_common_freqs[1]::float8 "
    ", (SELECT string_agg(encode(v, 'hex'), ',' ORDER BY i) "
    "FROM unnest(s.most_common_vals::text::bytea[]) WITH ORDINALITY AS m(v, i)), "
    "array_to_string(s.most_common_freqs, ',') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
    "AND s.attname = 'partition' WHERE c.oid = to_regclass($1)",
    [wire.TEXT_OID],
    [wire.load_float8] * 3 + [wire.load_text] * 2,
)


class PlanPolicy:
    """One table's verdict (``INDEX``, ``EXACT`` or ``CUSTOM``), read again every
    ``_PLAN_POLICY_SECONDS`` on the search's own connection.

    A table without statistics yet is analyzed first (autovacuum may take minutes, and
    the planner's guesses meanwhile sort the partition); ``CUSTOM`` while that fails (a
    role that may not).
    """

    def __init__(self, table: str) -> None:
        self._table = table.encode()
        self._analyze = sql.SQL("ANALYZE {t}").format(t=sql.Identifier(table)).as_bytes()
        self._verdict: str = CUSTOM
        # Under a CUSTOM verdict: the verdicts of the partitions the statistics list, and
        # the one of every other partition.
        self._listed: dict[bytes, str] = {}
        self._others: str = CUSTOM
        self._due = 0.0
        self.analyze_elsewhere: Callable[[bytes], Awaitable[None]] | None = None
        """Set when searches read a replica (which cannot ``ANALYZE``): runs the
        statement on the primary, off the search's path."""
        self._analyzing: asyncio.Task[None] | None = None

    async def verdict(
        self,
        conn: psycopg.AsyncConnection[tuple[Any, ...]],
        prelude: bytes | None = None,
        partition: bytes | None = None,
    ) -> str:
        """The verdict for ``partition`` (``None``: the table's); ``prelude`` as
        :meth:`ReadStatement.fetch`'s."""
        verdict = await self._table_verdict(conn, prelude)
        if verdict != CUSTOM or partition is None:
            return verdict
        return self._listed.get(partition, self._others)

    async def _table_verdict(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], prelude: bytes | None
    ) -> str:
        now = time.monotonic()
        if now >= self._due:
            self._due = now + _PLAN_POLICY_SECONDS
            with contextlib.suppress(psycopg.Error):  # keep the last verdict
                # Wire statements, as the search's own: interrupted, they end at once.
                rows = await _PARTITION_STATS.fetch(conn, (self._table,), prelude=prelude)
                if not _has_statistics(rows[0] if rows else None):
                    if self.analyze_elsewhere is not None:
                        self._analyze_elsewhere(self.analyze_elsewhere, now)
                        return self._verdict
                    await wire.command(conn, self._analyze)
                    rows = await _PARTITION_STATS.fetch(conn, (self._table,), prelude=prelude)
                row = rows[0] if rows else None
                self._verdict = plan_verdict(row)
                self._listed, self._others = partition_verdicts(row)
        return self._verdict

    def _analyze_elsewhere(self, analyze: Callable[[bytes], Awaitable[None]], now: float) -> None:
        """ANALYZE in the background; the statistics are read again once it had time to
        reach the replicas."""
        self._due = now + _STATISTICS_RETRY_SECONDS
        if self._analyzing is None or self._analyzing.done():
            self._analyzing = asyncio.get_running_loop().create_task(
                _quietly(analyze(self._analyze))
            )


async def _quietly(work: Awaitable[None]) -> None:
    with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
        await work


def _has_statistics(row: tuple[Any, ...] | None) -> bool:
    return row is not None and row[0] is not None and row[1] is not None and row[0] > 0


def plan_verdict(row: tuple[Any, ...] | None) -> str:
    """The verdict on a (rows, n_distinct, largest frequency) row of statistics.

    The HNSW scan walks about ``1 / share`` index entries for each candidate it keeps,
    the exact scan reads the partition's rows: a partition of ``r`` rows is the index's
    when ``r * r / rows`` reaches ``_INDEX_MIN_ROWS``. When the average and the largest
    partition get the same answer, one cached plan fits every partition; else ``CUSTOM``.
    """
    if row is None or not _has_statistics(row):
        return CUSTOM  # no statistics (or an empty table)
    rows, top = float(row[0]), row[2]
    average = rows / max(1.0, _distinct(row))
    largest = max(average, float(top) * rows if top is not None else average)
    verdict = _by_size(average, rows)
    return verdict if verdict == _by_size(largest, rows) else CUSTOM


def partition_verdicts(row: tuple[Any, ...] | None) -> tuple[dict[bytes, str], str]:
    """Under a ``CUSTOM`` verdict, from a (rows, n_distinct, largest frequency, most
    common partitions, their frequencies) row: the verdict of each listed partition, and
    of every other one, sized as the planner sizes it: the unlisted rows' average.
    Nothing listed, every partition ``CUSTOM``."""
    if row is None or len(row) < 5 or not _has_statistics(row) or not row[3] or not row[4]:
        return {}, CUSTOM
    rows = float(row[0])
    values = [bytes.fromhex(v) for v in str(row[3]).split(",")]
    freqs = [float(f) for f in str(row[4]).split(",")]
    if len(values) != len(freqs):
        return {}, CUSTOM
    listed = {v: _by_size(f * rows, rows) for v, f in zip(values, freqs, strict=True)}
    distinct = _distinct(row)
    if len(values) >= distinct:
        return listed, EXACT  # every partition listed: another one is new since
    # What the planner estimates for a value the statistics do not list, and so what
    # the lookup function's custom plan would be chosen on: the unlisted rows' average.
    other = max(0.0, 1.0 - sum(freqs)) * rows / (distinct - len(values))
    return listed, _by_size(other, rows)


def _distinct(row: tuple[Any, ...]) -> float:
    """The number of partitions; a negative n_distinct is minus their share of the rows."""
    rows, n_distinct = float(row[0]), float(row[1])
    return n_distinct if n_distinct > 0 else -n_distinct * rows


def _by_size(partition_rows: float, rows: float) -> str:
    return INDEX if partition_rows * partition_rows / rows >= _INDEX_MIN_ROWS else EXACT


def search_settings(ef_search: int | None, *, iterative_scan: bool = True) -> list[tuple[str, str]]:
    """The HNSW search settings a store's connections need, as (name, value) pairs.

    ``hnsw.iterative_scan=relaxed_order`` (pgvector >= 0.8; ``iterative_scan=False`` leaves
    it out), ``enable_sort=off`` (the ``INDEX`` verdict's cached plan is then the HNSW
    scan: the planner's costs for ``<=>`` under a sort leave out the distance work on wide
    vectors; the ``EXACT`` statement and the lookup function are unaffected),
    ``plan_cache_mode=force_generic_plan`` (each partition's statement is the one its
    size chose: planned once, never again for a call, where Postgres's own choice keeps
    planning a large partition's lookup on every call, its generic plan costed above
    the custom ones) and ``hnsw.ef_search=N`` when ``ef_search`` is set. Without them,
    searches still return correct rows, but a small partition of a large table may get
    fewer than ``k``.
    """
    settings = [("enable_sort", "off"), ("plan_cache_mode", "force_generic_plan")]
    if iterative_scan:
        settings.insert(0, ("hnsw.iterative_scan", "relaxed_order"))
    if ef_search is not None:
        settings.append(("hnsw.ef_search", str(ef_search)))
    return settings


def connection_options(ef_search: int | None) -> str:
    """libpq ``options`` for a store's pool connections: :func:`search_settings` as
    ``-c name=value`` (older pgvector servers drop an unknown setting with a warning in
    their log). They apply to every query of the connection, so give the store a pool of
    its own."""
    return " ".join(f"-c {name}={value}" for name, value in search_settings(ef_search))


def set_config_sql(settings: Sequence[tuple[str, str]], *, local: bool) -> bytes:
    """One ``SELECT set_config(...)`` of every setting: for the session, or (``local``)
    until the end of the current transaction."""
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({n}, {v}, {local})").format(
            n=sql.Literal(name), v=sql.Literal(value), local=sql.Literal(local)
        )
        for name, value in settings
    )
    return sql.SQL("SELECT {calls}").format(calls=calls).as_bytes()
