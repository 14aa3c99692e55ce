"""The load benchmarks' plan guard: the search must run the plan it is meant to.

A benchmark of semantic hits that silently measured a sort of the partition, where the
HNSW index was meant (or the reverse), would publish the wrong figure. Two checks, both
reading Postgres's own plans (auto_explain, JSON format):

- :func:`check_search_plan`: the store's own search (``PgVectorStore.search``: the
  statement, the plan policy and the session settings of the cache's pool) run on one
  connection of its own, past the plan cache's first custom plans; every plan it ran.
  The load benchmarks run it before and after the load.
- :func:`sample_plans` / :func:`logged_plans`: every new session of the database logs
  a sample of the plans it runs to the server log (the served app's pool included);
  after the load, the search plans logged meanwhile are read back.

Either raises :class:`PlanGuardError`, naming the plan found, when a search plan is not
the intended one (:func:`intended_plan`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from semanticcache._storage.pgvector import PgVectorStore, connection_options
from semanticcache._storage.plan import _INDEX_MIN_ROWS

__all__ = [
    "EXACT",
    "HNSW",
    "PlanGuardError",
    "SearchPlan",
    "check_search_plan",
    "describe",
    "enforce",
    "intended_plan",
    "logged_plans",
    "sample_plans",
]

HNSW: Final = "hnsw"
"""The search walks the table's HNSW index; no sort."""
EXACT: Final = "exact"
"""The search reads the partition and keeps the nearest by a sort; no HNSW index."""
_SORTS: Final = ("Sort", "Incremental Sort")


class PlanGuardError(RuntimeError):
    """A search ran a plan other than the intended one (or none was seen)."""


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """One search's plan: its kind (``hnsw``, ``exact`` or ``other``) and its shape,
    the plan's nodes in tree order, indented by depth."""

    kind: str
    shape: str


def intended_plan(partition_rows: int, table_rows: int) -> str:
    """The plan a search of a partition of ``partition_rows`` in a table of
    ``table_rows`` should run: the HNSW scan from ``_INDEX_MIN_ROWS`` rows times the
    partition's share of the table (the plan policy's rule), the exact scan below."""
    return HNSW if partition_rows * partition_rows / table_rows >= _INDEX_MIN_ROWS else EXACT


def describe(plan: dict[str, Any]) -> SearchPlan:
    """The kind and shape of one auto_explain / ``EXPLAIN (FORMAT JSON)`` plan."""
    lines: list[str] = []
    hnsw = sort = False

    def walk(node: dict[str, Any], depth: int) -> None:
        nonlocal hnsw, sort
        kind = str(node.get("Node Type", "?"))
        label = kind
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
            hnsw = hnsw or str(node["Index Name"]).endswith("_hnsw")
        elif "Relation Name" in node:
            label += f" on {node['Relation Name']}"
        sort = sort or kind in _SORTS
        lines.append("  " * depth + label)
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    walk(plan["Plan"], 0)
    if hnsw and not sort:
        kind = HNSW
    elif sort and not hnsw:
        kind = EXACT
    else:
        kind = "other"
    return SearchPlan(kind, "\n".join(lines))


def _plan_of(text: str, at: int = 0) -> dict[str, Any] | None:
    """The JSON plan of the auto_explain message at ``at`` of ``text`` (``duration:
    ... plan:`` then the JSON)."""
    start = text.find("{", text.find("plan:", at))
    if start < 0:
        return None
    plan, _ = json.JSONDecoder().raw_decode(text, start)
    return plan if isinstance(plan, dict) and "Plan" in plan else None


def _is_search(plan: dict[str, Any], table: str) -> bool:
    # The store's search: its table, the distance operator, one partition. The bare
    # pgvector query of the benchmarks has no partition filter.
    text = str(plan.get("Query Text", ""))
    return table in text and "<=>" in text and "partition =" in text


def enforce(plans: Sequence[SearchPlan], expected: str | Collection[str], where: str) -> None:
    """Raise :class:`PlanGuardError` unless ``plans`` holds plans, all of the
    ``expected`` kind (or of one of the ``expected`` kinds)."""
    allowed = {expected} if isinstance(expected, str) else set(expected)
    if not plans:
        raise PlanGuardError(f"{where}: no search plan was seen, so none could be checked")
    wrong = [p for p in plans if p.kind not in allowed]
    if wrong:
        intended = " or ".join(repr(k) for k in sorted(allowed))
        raise PlanGuardError(
            f"{where}: {len(wrong)} of {len(plans)} searches ran a {wrong[0].kind!r} plan, "
            f"not the intended {intended} one; the plan found:\n{wrong[0].shape}"
        )


async def check_search_plan(
    uri: str,
    *,
    table: str,
    dimension: int,
    partition: bytes,
    vectors: Sequence[Sequence[float]],
    expected: str,
    k: int = 1,
    threshold: float = 0.0,
    ef_search: int | None = None,
    options: str = "",
    calls: int = 8,
) -> list[SearchPlan]:
    """Run ``PgVectorStore.search`` of ``partition`` ``calls`` times (``vectors`` in
    turn) on one connection with the cache pool's session settings (``options``
    added), logging each plan; raise :class:`PlanGuardError` unless every search ran
    the ``expected`` plan. The plans seen.

    Eight calls by default: past the five custom plans after which Postgres may keep
    one generic plan for a prepared statement.
    """
    pool = AsyncConnectionPool(
        uri,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True, "options": f"{connection_options(ef_search)} {options}"},
    )
    await pool.open()
    try:
        store = PgVectorStore(pool, model_id="plan-guard", dimension=dimension, table=table)
        messages: list[str] = []
        async with pool.connection() as conn:
            await _log_every_plan(conn)
            conn.add_notice_handler(lambda d: messages.append(d.message_primary or ""))
        plans: list[SearchPlan] = []
        for i in range(calls):
            messages.clear()
            await store.search(partition, vectors[i % len(vectors)], threshold, k=k)
            found = [p for m in messages if (p := _plan_of(m)) is not None]
            plans += [describe(p) for p in found if _is_search(p, table)]
    finally:
        await pool.close()
    enforce(plans, expected, f"the search of {table}")
    return plans


async def _log_every_plan(conn: psycopg.AsyncConnection[Any]) -> None:
    """Every plan ``conn`` runs (nested ones too: the lookup function's) as a notice."""
    for statement in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.sample_rate = 1",
        "SET auto_explain.log_format = json",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        await conn.execute(statement)


def sample_plans(uri: str, rate: float) -> None:
    """From the next session on, every session of ``uri``'s database logs the plans of
    a ``rate`` share of its statements to the server log (auto_explain, JSON; a plan
    only, not timed node by node). Needs a superuser (the embedded Postgres's)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("LOAD 'auto_explain'")
        db = sql.Identifier(str(conn.info.dbname))
        for name, value in (
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.sample_rate", str(rate)),
            ("auto_explain.log_format", "json"),
            ("auto_explain.log_nested_statements", "on"),
        ):
            conn.execute(
                sql.SQL("ALTER DATABASE {db} SET {name} = {value}").format(
                    db=db, name=sql.Identifier(*name.split(".")), value=sql.Literal(value)
                )
            )


def logged_plans(log_file: Path, offset: int, table: str) -> tuple[list[SearchPlan], int]:
    """The search plans of ``table`` in the server log from byte ``offset`` on, and the
    offset after them."""
    with log_file.open("rb") as f:
        f.seek(offset)
        data = f.read()
    # Up to the last complete line: a message being written stays for the next read.
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", "replace")
    plans: list[SearchPlan] = []
    at = text.find("plan:")
    while at >= 0:
        try:
            plan = _plan_of(text, at)
        except json.JSONDecodeError:
            plan = None
        if plan is not None and _is_search(plan, table):
            plans.append(describe(plan))
        at = text.find("plan:", at + 5)
    return plans, offset + end
