"""Telling a database outage from bad data: an outage is retried (the rows wait), bad
data is that row's problem. Used by the writer and by the call lifecycle, which answers
503 ``service_unavailable`` to an outage and 500 ``internal_error`` to anything else.

The verdict follows what the error *means*, not which wrapper class carries it: SQLAlchemy
wraps asyncpg's errors in whatever DBAPI class its mapping picks (a server shutting down
arrives as a plain ``DBAPIError`` with ``connection_invalidated`` false; a value asyncpg
cannot encode arrives as an ``InterfaceError``), so the cause chain is walked down to the
driver's own error and judged there: PostgreSQL by SQLSTATE, SQLite by its result code.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# PostgreSQL SQLSTATE classes and codes that say "the server cannot serve now", not "this
# statement is wrong": connection exceptions (08), insufficient resources (53: too many
# connections, disk full, out of memory), operator intervention (57P01 admin shutdown,
# 57P02 crash shutdown, 57P03 cannot connect now, 57014 statement timeout / cancel),
# system errors (58: I/O), and lock/serialisation conflicts that succeed when retried (40).
_PG_OUTAGE_CLASSES = ("08", "53", "58", "40")
_PG_OUTAGE_CODES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03"})

# SQLite primary result codes of the same kind: busy/locked, out of memory, read-only
# (a remounted disk), I/O error, disk full, cannot open, lock protocol.
_SQLITE_OUTAGE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


class DatabaseUnavailable(Exception):
    """Raised by aigate itself when it gives up waiting for the database (e.g. a group
    commit during an outage). The rows concerned are kept and written once it is back."""


def is_outage(exc: BaseException) -> bool:
    """True for connection-level failures: unreachable, shutting down, out of connections
    or resources, locked or failing storage. False for an error the statement or its data
    caused (constraint, bad value, invalid text, a bug), which retrying would only repeat."""
    for err in _causes(exc):
        verdict = _verdict(err)
        if verdict is not None:
            return verdict
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps (SQLAlchemy's ``orig``, ``__cause__``,
    ``__context__``), nearest first, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]


def _verdict(err: BaseException) -> bool | None:
    """True/False when ``err`` settles the question, None to look at what it wraps."""
    if isinstance(err, DatabaseUnavailable):
        return True
    if isinstance(err, sa_exc.DBAPIError):
        return True if err.connection_invalidated else None
    if isinstance(err, sa_exc.TimeoutError):  # the pool waited in vain for a connection
        return True
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if code is None:  # no result code: a binding or programming error
            return False
        return (code & 0xFF) in _SQLITE_OUTAGE_CODES
    state = _pg_sqlstate(err)
    if state is not None:
        return state[:2] in _PG_OUTAGE_CLASSES or state in _PG_OUTAGE_CODES
    if _is_asyncpg(err):
        # client-side: a value that cannot be encoded is the row's fault; any other
        # interface or protocol error means the connection is unusable
        return not isinstance(err, ValueError)
    if isinstance(err, (OSError, TimeoutError)):  # refused, reset, unreachable, timed out
        return True
    return None


def _is_asyncpg(err: BaseException) -> bool:
    return type(err).__module__.startswith("asyncpg")


def _pg_sqlstate(err: BaseException) -> str | None:
    """The SQLSTATE of an error the PostgreSQL server sent (asyncpg's ``PostgresError``)."""
    if not _is_asyncpg(err):
        return None
    state = getattr(err, "sqlstate", None)
    return state if isinstance(state, str) and len(state) == 5 else None
