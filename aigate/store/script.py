"""Short transactions written once, as plain SQL, and run in one round trip.

A *transaction script* is a synchronous function ``fn(db, *args)`` that issues SQL
through ``db.rows(sql, params)`` (named ``:params``, valid on SQLite and PostgreSQL) and
raises to roll back. ``run_script`` runs it in a single transaction:

* on SQLite, inside the aiosqlite connection's own thread, in **one** hop — going
  through SQLAlchemy costs about four thread hops per statement, which dominated the
  hot path's CPU (GIL hand-offs on every hop);
* elsewhere, through SQLAlchemy's ``run_sync`` on the async connection (asyncpg has no
  thread to hop to).

This is the only module that reaches into aiosqlite's internals (``_execute`` and
``_conn``, unchanged since aiosqlite 0.17); the tests run every script on both databases.
"""
from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any, Callable, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class SqliteDb:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self._conn.execute(sql, params or {}).fetchall()

    def many(self, sql: str, params: list[dict[str, Any]]) -> None:
        if params:
            self._conn.executemany(sql, params)


class SqlAlchemyDb:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        result = self._conn.execute(_text(sql), params or {})
        return [tuple(r) for r in result] if result.returns_rows else []

    def many(self, sql: str, params: list[dict[str, Any]]) -> None:
        if params:
            self._conn.execute(_text(sql), params)


@lru_cache(maxsize=256)
def _text(sql: str):
    return text(sql)  # one TextClause per statement, so SQLAlchemy's compiled cache hits


def _in_sqlite_transaction(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple) -> T:
    conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks
    try:
        result = fn(SqliteDb(conn), *args)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return result


async def run_script(engine: AsyncEngine, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(db, *args)`` in one transaction and return its result."""
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            aio = raw.driver_connection  # the aiosqlite.Connection
            return await aio._execute(_in_sqlite_transaction, aio._conn, fn, args)
    async with engine.begin() as conn:
        return await conn.run_sync(lambda sync_conn: fn(SqlAlchemyDb(sync_conn), *args))
