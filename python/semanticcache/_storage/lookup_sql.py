"""The lookup SQL: the exact probe, then the stage-1 search, as a statement or a function.

Also the lookup path's two single reads (:func:`exact_read`, :func:`response_read`).

One builder of the search (:func:`search_sql`) serves both forms: the plain statement
(one cached plan, for the plan policy's ``INDEX`` and ``EXACT`` verdicts) and the table's
lookup function (planned for each lookup's partition, for ``CUSTOM``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from semanticcache._storage import wire
from semanticcache._storage.wire import ReadStatement

__all__ = [
    "LOOKUP_COLUMNS",
    "exact_read",
    "function_call",
    "function_ddl",
    "function_name",
    "response_read",
    "statement",
]

# The lookups' columns: id, response, created_at, similarity, text_digest, lookup_text,
# expires_at.
LOOKUP_COLUMNS: Final = (
    wire.load_int8,
    wire.load_bytea,
    wire.load_timestamptz,
    wire.load_float8,
    wire.load_bytea,
    wire.load_text,
    wire.load_timestamptz,
)
_PARAM_TYPES: Final = [
    wire.BYTEA_OID,
    wire.BYTEA_OID,
    wire.INFERRED_OID,
    wire.FLOAT8_OID,
    wire.INT4_OID,
]


@dataclass(frozen=True, slots=True)
class _Args:
    """How the lookup's inputs are spelled: statement parameters or function arguments."""

    partition: sql.Composable
    digest: sql.Composable
    vector: sql.Composable
    threshold: sql.Composable
    k: sql.Composable


_STATEMENT_ARGS: Final = _Args(*(sql.SQL(f"${i}") for i in range(1, 6)))
_FUNCTION_ARGS: Final = _Args(*(sql.SQL(a) for a in ("_p", "_d", "_v", "_th", "_k")))


def _probe_sql(table: sql.Identifier, a: _Args) -> sql.Composed:
    # 'infinity' has no Python datetime: NULL stands for "never expires".
    return sql.SQL(
        "SELECT id, response, created_at, 1.0::float8, text_digest, lookup_text, "
        "NULLIF(expires_at, 'infinity') "
        "FROM {t} WHERE partition = {p} AND text_digest = {d} AND expires_at > now()"
    ).format(t=table, p=a.partition, d=a.digest)


def search_sql(
    table: sql.Identifier,
    a: _Args,
    *,
    top1: bool,
    exact: bool = False,
    join_back: bool = False,
    where: str = "",
) -> sql.Composed:
    """The stage-1 search: the ``k`` nearest live rows of the partition, best first.

    Every candidate comes back, passed or not (a miss reports its nearest similarity),
    with its lookup text (the agreement check may pass over the best); only the best
    carries its response, and only if it passes the threshold. The distance is computed
    once per row: ORDER BY its alias is still the index's ordering operator. ``exact``
    orders by an expression the index cannot serve (the partition is read and the
    nearest kept by a top-N sort). ``join_back`` scans ids and distances alone and
    fetches the kept rows' other columns by primary key (where the partition is sorted,
    each scanned row carries two columns, not seven); without it the scan carries them.
    With ``top1``, a literal ``LIMIT 1`` (the plan for one row) and no window or sort.
    """
    distance = sql.SQL("(embedding <=> {v}) + 0" if exact else "embedding <=> {v}")
    carried = "id" if join_back else "id, response, created_at, text_digest, lookup_text"
    nearest = sql.SQL(
        "SELECT {carried}, {distance} AS distance FROM {t} "
        "WHERE partition = {p} AND expires_at > now() ORDER BY distance LIMIT {k}"
    ).format(
        carried=sql.SQL(carried),
        distance=distance.format(v=a.vector),
        t=table,
        p=a.partition,
        k=sql.SQL("1") if top1 else a.k,
    )
    row = sql.SQL("e" if join_back else "n")
    joined = sql.SQL(" JOIN {t} AS e ON e.id = n.id").format(t=table) if join_back else sql.SQL("")
    best = sql.SQL("" if top1 else "row_number() OVER w = 1 AND ")
    # The client's order (similarity, then id), which ties on similarity where
    # distances differ in their last bit: the best row it sees carries the response.
    window = sql.SQL(
        ""
        if top1
        else " WINDOW w AS (ORDER BY 1 - n.distance DESC, {r}.id) "
        "ORDER BY 1 - n.distance DESC, {r}.id"
    ).format(r=row)
    return sql.SQL(
        "SELECT {r}.id, CASE WHEN {best}1 - n.distance >= {th} THEN {r}.response END, "
        "{r}.created_at, 1 - n.distance, {r}.text_digest, {r}.lookup_text, NULL::timestamptz "
        "FROM ({nearest}) AS n{joined}{where}{window}"
    ).format(
        r=row,
        best=best,
        th=a.threshold,
        nearest=nearest,
        joined=joined,
        where=sql.SQL(where),
        window=window,
    )


def statement(table: sql.Identifier, *, top1: bool, exact: bool) -> ReadStatement:
    """The lookup as one statement, for a cached plan: the probe, and the search under a
    one-time ``NOT EXISTS`` filter on the probe's CTE (an exact hit never starts it).

    Parameters: partition, text digest, vector, threshold (and k, unless ``top1``).
    ``exact`` is the plan policy's ``EXACT`` verdict; otherwise the search's ordering is
    the HNSW index's (the connections run with ``enable_sort`` off, so the plan is the
    HNSW scan).
    """
    search = search_sql(
        table,
        _STATEMENT_ARGS,
        top1=top1,
        exact=exact,
        join_back=True,
        where=" WHERE NOT EXISTS (SELECT FROM exact)",
    )
    query = sql.SQL("WITH exact AS ({probe}) SELECT * FROM exact UNION ALL ({search})").format(
        probe=_probe_sql(table, _STATEMENT_ARGS), search=search
    )
    return ReadStatement(
        query.as_bytes(), _PARAM_TYPES[:4] if top1 else _PARAM_TYPES, LOOKUP_COLUMNS
    )


def exact_read(table: sql.Identifier) -> ReadStatement:
    """The live row of (partition, text digest): id, response, created_at, expires_at."""
    query = sql.SQL(
        # 'infinity' has no Python datetime: NULL stands for "never expires".
        "SELECT id, response, created_at, NULLIF(expires_at, 'infinity') FROM {t} "
        "WHERE partition = $1 AND text_digest = $2 AND expires_at > now()"
    ).format(t=table)
    return ReadStatement(
        query.as_bytes(),
        [wire.BYTEA_OID, wire.BYTEA_OID],
        [wire.load_int8, wire.load_bytea, wire.load_timestamptz, wire.load_timestamptz],
    )


def response_read(table: sql.Identifier) -> ReadStatement:
    """The response of the live row of an id."""
    query = sql.SQL("SELECT response FROM {t} WHERE id = $1 AND expires_at > now()")
    return ReadStatement(query.format(t=table).as_bytes(), [wire.INT8_OID], [wire.load_bytea])


def function_name(table: str) -> sql.Identifier:
    """The name of ``table``'s lookup function (within Postgres's 63 bytes)."""
    return sql.Identifier(f"{table[:56]}_lookup")


def function_call(table: str) -> ReadStatement:
    """A call of ``table``'s lookup function, with the statement's five parameters."""
    query = sql.SQL(
        "SELECT id, response, created_at, similarity, text_digest, lookup_text, expires_at "
        "FROM {f}($1, $2, $3, $4, $5)"
    ).format(f=function_name(table))
    return ReadStatement(query.as_bytes(), _PARAM_TYPES, LOOKUP_COLUMNS)


def function_ddl(table: str) -> sql.Composed:
    """``CREATE OR REPLACE FUNCTION <table>_lookup(...)``: the probe, then, only if it
    found nothing, the search, planned for the lookup's partition.

    For tables without statistics yet, whose partitions cannot be sized: a generic plan
    (sized as the average partition) could sort a large partition in full. PL/pgSQL
    caches each query's plan apart: the probe's stays generic, the search alone runs
    under ``force_custom_plan`` (and with sorts allowed), restored after. The search
    scans all its columns (a join back by primary key costs more planning than it
    saves).
    ``STABLE``: both queries see the caller's snapshot.
    """
    t = sql.Identifier(table)
    a = _FUNCTION_ARGS
    return sql.SQL(
        """
        CREATE OR REPLACE FUNCTION {f}(
            _p bytea, _d bytea, _v vector, _th double precision, _k integer
        )
        RETURNS TABLE (
            id bigint, response bytea, created_at timestamptz,
            similarity double precision, text_digest bytea, lookup_text text,
            expires_at timestamptz
        )
        LANGUAGE plpgsql STABLE
        AS $semcache$
        #variable_conflict use_column
        DECLARE
            _mode text := current_setting('plan_cache_mode');
            _sort text := current_setting('enable_sort');
        BEGIN
            RETURN QUERY {probe};
            IF FOUND THEN
                RETURN;
            END IF;
            PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
            -- The planner's choice for each partition (connection_options turns sorts
            -- off for the cached plans).
            PERFORM set_config('enable_sort', 'on', true);
            IF _k = 1 THEN
                RETURN QUERY {top1};
            ELSE
                RETURN QUERY {topk};
            END IF;
            PERFORM set_config('plan_cache_mode', _mode, true);
            PERFORM set_config('enable_sort', _sort, true);
        END
        $semcache$
        """
    ).format(
        f=function_name(table),
        probe=_probe_sql(t, a),
        top1=search_sql(t, a, top1=True),
        topk=search_sql(t, a, top1=False),
    )
