"""Database engines: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg) by URL."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

CONNECT_TIMEOUT_S = 10

# A PostgreSQL connection back in the pool for less than this long answered then, and is
# handed out without a ping; one idle longer is pinged first and replaced if the server
# has dropped it. A ping before every checkout (SQLAlchemy's ``pool_pre_ping``) cost a
# round trip per transaction: 15 % of an App API stream's CPU on PostgreSQL
# (bench/CHANGES.md). A connection the server dropped within this window fails the one
# transaction that uses it, as any connection lost mid-transaction does: the request is
# answered 503 with Retry-After, nothing is written, and the pool opens a new one.
PING_AFTER_IDLE_S = 5.0


def async_url(url: str) -> str:
    """Map the plain URLs of the config file to the async drivers aigate uses."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def is_sqlite(url: str) -> bool:
    return async_url(url).startswith("sqlite")


# How long a SQLite statement waits for another connection's write lock (another process
# on the same file, or a manual sqlite3 session) before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # a writer's flush (hundreds of upserts in one transaction) outgrows the statement
    # journal's 64 KiB in memory: in a file it cost a create, writes and an unlink per flush
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _reset_sqlite(dbapi_connection, _record, _state) -> None:
    # Roll back only a connection left inside a transaction; asking aiosqlite is free,
    # while an unconditional rollback costs a thread hop on every checkout.
    if dbapi_connection._connection.in_transaction:
        dbapi_connection.rollback()


# Settings of the log-search read pool on PostgreSQL. A prepared statement run five times
# may switch to a generic plan that ignores its parameters (a keyword's selectivity, a
# rare model, a short range) and keeps it across ANALYZEs; planning every execution costs
# well under a millisecond next to these queries. JIT compilation would add more than the
# queries take; a bigger work_mem keeps a keyword's bitmap of matches exact (not lossy).
READER_SETTINGS = {
    "plan_cache_mode": "force_custom_plan",
    "jit": "off",
    "work_mem": "32MB",
    "application_name": "aigate-log-search",
}


def create_reader_engine(url: str, *, pool_size: int = 4) -> AsyncEngine | None:
    """A small pool for the Admin API's log and dashboard reads on PostgreSQL, with
    ``READER_SETTINGS``; None on SQLite (one connection serves everything there)."""
    if is_sqlite(url):
        return None
    return create_engine(url, pool_size=pool_size, server_settings=READER_SETTINGS)


def create_engine(url: str, *, pool_size: int = 20, server_settings: dict[str, str] | None = None) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer at a time; one shared connection serialises work in
        # process instead of spinning on "database is locked".
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _reset_sqlite)
        return engine
    # aigate's own ``?schema=`` parameter selects a PostgreSQL schema (search_path)
    parsed = make_url(url)
    schema = parsed.query.get("schema")
    # a server that does not answer (a network partition) is an outage after this long,
    # not a request held for asyncpg's default minute
    # (a repeated ?schema= gives a tuple; it is passed on as it is)
    settings: dict[str, str | tuple[str, ...]] = dict(server_settings or {})
    if schema:
        parsed = parsed.difference_update_query(["schema"])
        settings["search_path"] = schema
    connect_args: dict = {"timeout": CONNECT_TIMEOUT_S}
    if settings:
        connect_args["server_settings"] = settings
    engine = create_async_engine(parsed, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection at checkout only when it has been idle for
    ``PING_AFTER_IDLE_S``; one that fails the ping is replaced (SQLAlchemy retries the
    checkout on ``DisconnectionError``)."""
    dialect = engine.sync_engine.dialect

    def fresh(_dbapi_conn, record) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as error:
            raise exc.DisconnectionError(f"connection lost while idle: {error}") from error

    event.listen(engine.sync_engine, "connect", fresh)
    event.listen(engine.sync_engine, "checkin", fresh)
    event.listen(engine.sync_engine, "checkout", checkout)
