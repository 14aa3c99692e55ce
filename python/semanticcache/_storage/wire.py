"""The lookup path's reads, sent on psycopg's libpq connection without a cursor.

A cache hit is one short statement, and psycopg's cursor machinery (query conversion,
the prepared-statement manager, adapters and row makers, built anew per execute) cost
about as much client CPU as the round trip itself. A :class:`ReadStatement` is prepared
once per connection under a name of its own (or, behind a transaction pooler, sent
unnamed with its settings in one pipeline), takes its parameters already encoded
(binary), and decodes its few result columns with ``struct``: the same libpq calls
psycopg makes (``PQsendQueryPrepared``, then psycopg's own non-blocking wait), minus
the per-call set-up. Everything else (writes, schema, tools) goes through psycopg's
ordinary API.

Connections come from the store's psycopg pool, one caller at a time, in autocommit
mode. A wait interrupted (by a timeout) ends at once: unlike psycopg's own wait, which
then sends the server a cancel request and waits up to 10 s for it to work, it leaves
the connection busy, and the pool closes a busy connection when it is returned. The
server ends the statement on its own (the cache's connections carry a
``statement_timeout`` of its budget). Whatever goes wrong on the way, a server error,
an undecodable value or an unexpected result, raises a ``psycopg.Error``: the store's
callers treat those as a store failure (a miss), never as a bug.
"""

from __future__ import annotations

import hashlib
import struct
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import errors, pq
from psycopg.generators import execute
from psycopg.waiting import wait_async

__all__ = [
    "BYTEA_OID",
    "FLOAT8_OID",
    "INFERRED_OID",
    "INT4_OID",
    "INT8_OID",
    "TEXT_OID",
    "ReadStatement",
    "dump_float8",
    "dump_int4",
    "dump_int8",
    "load_bytea",
    "load_float8",
    "load_int8",
    "load_text",
    "load_timestamptz",
]

Decoder = Callable[[bytes], Any]

_INT8: Final = struct.Struct(">q")
_INT4: Final = struct.Struct(">i")
_FLOAT8: Final = struct.Struct(">d")
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
# timestamptz's binary form: microseconds since 2000-01-01 UTC; these two mean ±infinity.
_INFINITIES: Final = (2**63 - 1, -(2**63))

# How often a wait wakes up to look for interruptions (psycopg's own interval).
_WAIT_INTERVAL: Final = 0.1

# Parameter type OIDs; 0 lets the server infer the type (pgvector's vector has no
# fixed OID).
BYTEA_OID: Final = 17
FLOAT8_OID: Final = 701
INT4_OID: Final = 23
INT8_OID: Final = 20
TEXT_OID: Final = 25
INFERRED_OID: Final = 0


def load_int8(data: bytes) -> int:
    """Decode a binary ``bigint``."""
    value: int = _INT8.unpack(data)[0]
    return value


def load_float8(data: bytes) -> float:
    """Decode a binary ``double precision``."""
    value: float = _FLOAT8.unpack(data)[0]
    return value


def load_bytea(data: bytes) -> bytes:
    """A binary ``bytea`` is its bytes."""
    return data


def load_text(data: bytes) -> str:
    """Decode a ``text`` sent in UTF-8 (:meth:`ReadStatement.fetch` uses the
    connection's ``client_encoding`` instead when it is another)."""
    return data.decode()


def load_timestamptz(data: bytes) -> datetime:
    """Decode a binary ``timestamptz`` as an aware UTC datetime."""
    micros: int = _INT8.unpack(data)[0]
    if micros in _INFINITIES:
        raise psycopg.DataError("timestamp infinity has no Python datetime")
    try:
        return _PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        # Postgres reaches 294276 AD, Python's datetime 9999.
        raise psycopg.DataError("timestamp out of Python's datetime range") from None


# The result type each decoder reads: a statement's columns are checked against them,
# so that a column of another type is an error, not a wrong value.
_COLUMN_OIDS: Final[dict[Decoder, int]] = {
    load_int8: INT8_OID,
    load_float8: FLOAT8_OID,
    load_bytea: BYTEA_OID,
    load_text: 25,
    load_timestamptz: 1184,
}


def dump_int4(value: int) -> bytes:
    """Encode an ``integer`` parameter (binary)."""
    return _INT4.pack(value)


def dump_int8(value: int) -> bytes:
    """Encode a ``bigint`` parameter (binary)."""
    return _INT8.pack(value)


def dump_float8(value: float) -> bytes:
    """Encode a ``double precision`` parameter (binary)."""
    return _FLOAT8.pack(value)


class ReadStatement:
    """One read-only statement with ``$n`` parameters, all sent in binary, and binary
    result columns decoded by ``columns``.

    :meth:`fetch` runs it as a named prepared statement, prepared on a connection's
    first use: Postgres caches its plan per connection (generic once it judges that as
    good as a custom one, after five calls). Behind a transaction-pooling PgBouncer,
    whose server connections change from one transaction to the next, it runs unnamed
    instead (``prelude``).
    """

    def __init__(
        self, query: str | bytes, param_types: Sequence[int], columns: Sequence[Decoder]
    ) -> None:
        self.query = query.encode() if isinstance(query, str) else query
        self._param_types = list(param_types)
        self._formats = [pq.Format.BINARY] * len(param_types)
        self._columns = tuple(enumerate(columns))
        self._column_oids = [_COLUMN_OIDS[decode] for decode in columns]
        self._has_text = load_text in columns
        # Named after the text and parameter types: two versions of a statement never
        # share a name, and two stores of one table share theirs.
        digest = hashlib.blake2b(
            self.query + repr(self._param_types).encode(), digest_size=8
        ).hexdigest()
        self.name = f"semcache_{digest}".encode()
        self._prepared: weakref.WeakSet[pq.abc.PGconn] = weakref.WeakSet()

    async def fetch(
        self,
        conn: psycopg.AsyncConnection[Any],
        params: Sequence[bytes | None],
        *,
        prelude: bytes | None = None,
    ) -> list[tuple[Any, ...]]:
        """The decoded rows; a server error raises its ``psycopg.Error`` subclass.

        ``prelude`` given: the statement runs unnamed (parsed and planned for this call),
        for a connection pooler that hands each transaction another server connection;
        a non-empty ``prelude`` (a statement without parameters, ``SELECT set_config(...,
        true)``) runs first in the same transaction: both go in one pipeline, one round
        trip.
        """
        if prelude is not None:
            return self._rows(conn, await self._execute_unnamed(conn, params, prelude))
        pgconn = conn.pgconn
        if pgconn not in self._prepared:
            await self._prepare(conn)
        result = await self._execute(conn, params)
        if result.status == pq.ExecStatus.FATAL_ERROR and _missing_statement(result):
            # Deallocated behind our back (DISCARD ALL by a pooler, DEALLOCATE ALL):
            # prepare it again, once.
            self._prepared.discard(pgconn)
            await self._prepare(conn)
            result = await self._execute(conn, params)
        return self._rows(conn, result)

    async def _execute_unnamed(
        self, conn: psycopg.AsyncConnection[Any], params: Sequence[bytes | None], prelude: bytes
    ) -> pq.abc.PGresult:
        pgconn = conn.pgconn
        if not prelude:
            pgconn.send_query_params(
                self.query, params, self._param_types, self._formats, pq.Format.BINARY
            )
            return _last(await _wait(pgconn))
        # Statements before one Sync run in one implicit transaction, on one server
        # connection of a transaction pooler: the prelude's local settings reach the read.
        # Interrupted, the connection stays busy (in pipeline mode) and the pool drops it.
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(prelude, None)
        pgconn.send_query_params(
            self.query, params, self._param_types, self._formats, pq.Format.BINARY
        )
        pgconn.pipeline_sync()
        first = _last(await _wait(pgconn))
        result = _last(await _wait(pgconn))
        sync = _last(await _wait(pgconn))
        pgconn.exit_pipeline_mode()
        if sync.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.InterfaceError(
                f"unexpected result status {pq.ExecStatus(sync.status).name}"
            )
        if first.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(first, encoding=conn.info.encoding)
        if first.status != pq.ExecStatus.TUPLES_OK:
            raise psycopg.InterfaceError(
                f"unexpected result status {pq.ExecStatus(first.status).name}"
            )
        return result

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> pq.abc.PGresult:
        pgconn = conn.pgconn
        pgconn.send_query_prepared(self.name, params, self._formats, pq.Format.BINARY)
        return _last(await _wait(pgconn))

    async def _prepare(self, conn: psycopg.AsyncConnection[Any]) -> None:
        pgconn = conn.pgconn
        pgconn.send_prepare(self.name, self.query, self._param_types)
        result = _last(await _wait(pgconn))
        if result.status == pq.ExecStatus.FATAL_ERROR and not _duplicate_statement(result):
            raise errors.error_from_result(result, encoding=conn.info.encoding)
        self._prepared.add(pgconn)

    def _rows(
        self, conn: psycopg.AsyncConnection[Any], result: pq.abc.PGresult
    ) -> list[tuple[Any, ...]]:
        if result.status != pq.ExecStatus.TUPLES_OK:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise errors.error_from_result(result, encoding=conn.info.encoding)
            raise psycopg.InterfaceError(
                f"unexpected result status {pq.ExecStatus(result.status).name}"
            )
        oids = [result.ftype(i) for i in range(result.nfields)]
        if oids != self._column_oids:
            raise psycopg.InterfaceError(
                f"statement {self.name.decode()} returned columns of type OIDs {oids}, "
                f"expected {self._column_oids}"
            )
        columns = self._columns
        # The server's name for the encoding, a libpq call; psycopg's conn.info.encoding
        # costs more (a codec look-up) and is needed only when it is not UTF-8.
        if self._has_text and conn.pgconn.parameter_status(b"client_encoding") != b"UTF8":
            encoding = conn.info.encoding
            # SQL_ASCII stores bytes as given, and psycopg sends str as UTF-8 there.
            if encoding not in ("utf-8", "ascii"):
                columns = tuple(
                    (i, (lambda b: b.decode(encoding)) if decode is load_text else decode)
                    for i, decode in columns
                )
        value = result.get_value
        try:
            return [
                tuple(None if (v := value(row, i)) is None else decode(v) for i, decode in columns)
                for row in range(result.ntuples)
            ]
        except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise psycopg.DataError(f"statement {self.name.decode()}: {exc}") from exc


async def command(conn: psycopg.AsyncConnection[Any], query: bytes) -> None:
    """Run one statement without parameters or rows (``ANALYZE``) as the reads run:
    interrupted, it returns at once. A server error raises its ``psycopg.Error``."""
    pgconn = conn.pgconn
    pgconn.send_query(query)
    result = _last(await _wait(pgconn))
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.InterfaceError(
            f"unexpected result status {pq.ExecStatus(result.status).name}"
        )


async def _wait(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """The results of the statement sent on ``pgconn``; cancelled, it returns at once
    (see the module doc)."""
    return await wait_async(execute(pgconn), pgconn.socket, interval=_WAIT_INTERVAL)


def _last(results: list[pq.abc.PGresult]) -> pq.abc.PGresult:
    if not results:
        raise psycopg.InternalError("got no result from the query")
    return results[-1]


def _sqlstate(result: pq.abc.PGresult) -> bytes | None:
    return result.error_field(pq.DiagnosticField.SQLSTATE)


def _missing_statement(result: pq.abc.PGresult) -> bool:
    return _sqlstate(result) == b"26000"  # invalid_sql_statement_name


def _duplicate_statement(result: pq.abc.PGresult) -> bool:
    # Prepared by an earlier store of the same statement on this connection.
    return _sqlstate(result) == b"42P05"  # duplicate_prepared_statement
