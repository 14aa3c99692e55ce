"""ReadStatement: the lookup path's reads without a cursor decode what psycopg decodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semanticcache._storage import wire
from semanticcache._storage.wire import ReadStatement

ROW_SQL = "SELECT $1::int8, $2::float8, $3::bytea, $4::text, $5::timestamptz"
ROW_TYPES = [wire.INT8_OID, wire.FLOAT8_OID, wire.BYTEA_OID, wire.INFERRED_OID, wire.INFERRED_OID]
ROW_COLUMNS = [
    wire.load_int8,
    wire.load_float8,
    wire.load_bytea,
    wire.load_text,
    wire.load_timestamptz,
]
ROW = ReadStatement(ROW_SQL, ROW_TYPES, ROW_COLUMNS)
# Postgres's timestamptz range, within Python's.
TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@pytest.fixture
async def conn(pg_uri: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as c:
        yield c


def encode(i: int, f: float, b: bytes, s: str, t: datetime) -> list[bytes | None]:
    """The parameters in binary; text and timestamptz as psycopg's binary dumpers
    would send them."""
    micros = (t - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return [
        wire.dump_int8(i),
        wire.dump_float8(f),
        b,
        s.encode(),
        micros.to_bytes(8, "big", signed=True),
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    f=st.floats(allow_nan=False),
    b=st.binary(max_size=300),
    s=st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
    t=TIMES,
)
async def test_decoded_rows_equal_psycopgs(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    i: int,
    f: float,
    b: bytes,
    s: str,
    t: datetime,
) -> None:
    (row,) = await ROW.fetch(conn, encode(i, f, b, s, t))
    cur = await conn.execute(
        "SELECT %s::int8, %s::float8, %s::bytea, %s::text, %s::timestamptz", (i, f, b, s, t)
    )
    assert row == await cur.fetchone()
    assert row == (i, f, b, s, t)
    assert row[4].tzinfo is UTC


async def test_nulls_and_no_rows(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    nulls = ReadStatement(
        "SELECT NULL::int8, $1::bytea WHERE $2",
        [wire.BYTEA_OID, wire.INFERRED_OID],
        [
            wire.load_int8,
            wire.load_bytea,
        ],
    )
    assert await nulls.fetch(conn, [None, b"\x01"]) == [(None, None)]
    assert await nulls.fetch(conn, [b"x", b"\x00"]) == []
    assert await nulls.fetch(conn, [b"x", b"\x01"]) == [(None, b"x")]


async def test_a_deallocated_statement_is_prepared_again(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    params = encode(7, 0.5, b"b", "s", datetime(2026, 11, 26, tzinfo=UTC))
    assert await ROW.fetch(conn, params) == [
        (7, 0.5, b"b", "s", datetime(2026, 11, 26, tzinfo=UTC))
    ]
    # What a pooler's DISCARD ALL or a DEALLOCATE ALL does behind the cache's back.
    await conn.execute("DEALLOCATE ALL")
    assert await ROW.fetch(conn, params) == [
        (7, 0.5, b"b", "s", datetime(2026, 11, 26, tzinfo=UTC))
    ]
    # Prepared by another statement object of the same text on this connection.
    twin = ReadStatement(ROW_SQL, ROW_TYPES, ROW_COLUMNS)
    assert twin.name == ROW.name
    assert len(await twin.fetch(conn, params)) == 1
    cur = await conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE name = %s", (ROW.name.decode(),)
    )
    assert await cur.fetchone() == (1,)


async def test_server_errors_raise_psycopgs_classes(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    divide = ReadStatement("SELECT (1 / $1::int4)::int8", [wire.INT4_OID], [wire.load_int8])
    with pytest.raises(psycopg.errors.DivisionByZero):
        await divide.fetch(conn, [wire.dump_int4(0)])
    missing = ReadStatement("SELECT * FROM no_such_table", [], [])
    with pytest.raises(psycopg.errors.UndefinedTable):
        await missing.fetch(conn, [])
    # The connection is still usable.
    assert await divide.fetch(conn, [wire.dump_int4(1)]) == [(1,)]


async def test_text_follows_the_client_encoding(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    text = ReadStatement("SELECT $1::text", [wire.INFERRED_OID], [wire.load_text])
    await conn.execute("SET client_encoding = 'LATIN1'")
    assert await text.fetch(conn, ["déjà".encode("latin-1")]) == [("déjà",)]
    await conn.execute("SET client_encoding = 'UTF8'")
    assert await text.fetch(conn, ["déjà".encode()]) == [("déjà",)]
    # SQL_ASCII passes bytes through; psycopg sends str as UTF-8 there.
    await conn.execute("SET client_encoding = 'SQL_ASCII'")
    assert await text.fetch(conn, ["déjà".encode()]) == [("déjà",)]


async def test_a_column_of_another_type_is_an_error(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    small = ReadStatement("SELECT 1::int4", [], [wire.load_int8])
    with pytest.raises(psycopg.InterfaceError, match="type OIDs"):
        await small.fetch(conn, [])


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("infinity", "infinity"),
        ("-infinity", "infinity"),
        ("33000-01-01 00:00+00", "range"),  # Postgres goes to 294276 AD, Python to 9999
        ("4000-01-01 00:00+00 BC", "range"),
    ],
)
async def test_timestamps_python_cannot_hold_are_data_errors(
    conn: psycopg.AsyncConnection[tuple[object, ...]], literal: str, message: str
) -> None:
    """A psycopg error, which the store turns into a miss, not an exception of another
    kind that would escape fail-open."""
    far = ReadStatement(
        "SELECT $1::text::timestamptz", [wire.INFERRED_OID], [wire.load_timestamptz]
    )
    with pytest.raises(psycopg.DataError, match=message):
        await far.fetch(conn, [literal.encode()])


async def test_a_command_runs_and_its_errors_raise(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    """``command`` runs a statement without rows (the plan policy's ``ANALYZE``) on the
    connection, and a server error is the psycopg class of its SQLSTATE."""
    await conn.execute("CREATE TABLE wire_command (x int)")
    await conn.execute("INSERT INTO wire_command SELECT generate_series(1, 10)")
    await wire.command(conn, b"ANALYZE wire_command")
    cur = await conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'wire_command'")
    assert await cur.fetchone() == (10.0,)
    with pytest.raises(psycopg.errors.UndefinedTable):
        await wire.command(conn, b"ANALYZE no_such_table")
    with pytest.raises(psycopg.InterfaceError):
        await wire.command(conn, b"SELECT 1")  # rows: not a command
    cur = await conn.execute("SELECT 1")  # the connection is still usable
    assert await cur.fetchone() == (1,)
