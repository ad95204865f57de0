"""Outage or bad data? Real driver errors, classified by what they mean (both databases).

The outage cases come from a private PostgreSQL cluster that the tests stop and start
(smart shutdown, fast shutdown, refused connections, too many connections); the bad-data
cases from the shared test database; SQLite's from real locked and broken statements.
"""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aigate.store.db import create_engine
from aigate.store.outage import DatabaseUnavailable, is_outage
from tests.pgcluster import pg_cluster, private_pg  # noqa: F401  (fixtures)


async def _error_of(engine, sql: str, params: dict | None = None) -> BaseException:
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params or {})
    except Exception as exc:
        return exc
    raise AssertionError(f"no error from {sql}")


async def test_shutting_down_is_an_outage_though_the_connection_is_not_invalidated(private_pg):  # noqa: F811
    """Smart shutdown: while one session stays, new connections are refused with "the
    database system is shutting down" (57P03), which SQLAlchemy hands over as a plain
    DBAPIError with connection_invalidated false."""
    holder = await asyncpg.connect(private_pg.url)
    engine = create_engine(private_pg.url, pool_size=1)
    try:
        await private_pg.astop("smart", wait=False)
        await asyncio.sleep(0.5)
        exc = await _error_of(engine, "SELECT 1")
        assert "shutting down" in str(exc)
        assert type(exc) is DBAPIError and not exc.connection_invalidated
        assert is_outage(exc)
    finally:
        await holder.close()
        await engine.dispose()
        await asyncio.to_thread(private_pg.wait_stopped)


async def test_fast_shutdown_and_a_stopped_server_are_outages(private_pg):  # noqa: F811
    engine = create_engine(private_pg.url, pool_size=1)
    raw = await asyncpg.connect(private_pg.url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await private_pg.astop("fast")  # terminates every session (57P01)
            with pytest.raises(Exception) as in_session:
                await conn.execute(text("SELECT 1"))
        assert is_outage(in_session.value), repr(in_session.value)
        with pytest.raises(Exception) as raw_error:  # the driver's own error, unwrapped
            await raw.fetchval("SELECT 1")
        assert is_outage(raw_error.value), repr(raw_error.value)
        refused = await _error_of(engine, "SELECT 1")  # nobody listens on the port
        assert is_outage(refused), repr(refused)
    finally:
        raw.terminate()
        await engine.dispose()


async def test_too_many_connections_is_an_outage(private_pg):  # noqa: F811
    admin = await asyncpg.connect(private_pg.url)
    role = "tight_" + private_pg.url.rsplit("_", 1)[1]
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    first = await asyncpg.connect(private_pg.url.replace("postgres@", f"{role}@"))
    engine = create_engine(private_pg.url.replace("postgres@", f"{role}@"), pool_size=1)
    try:
        exc = await _error_of(engine, "SELECT 1")
        assert "too many connections" in str(exc)
        assert is_outage(exc)
    finally:
        await first.close()
        await admin.close()
        await engine.dispose()


BAD_ROWS = [
    ("NUL in text", "INSERT INTO t (s) VALUES (:v)", {"v": "a\x00b"}),
    ("text too long", "INSERT INTO t (s) VALUES (:v)", {"v": "x" * 100}),
    ("beyond int64", "INSERT INTO t (n) VALUES (:v)", {"v": 2**70}),
    ("NOT NULL", "INSERT INTO t (n, s) VALUES (1, NULL)", {}),
    ("duplicate key", "INSERT INTO t (n) VALUES (7)", {}),
    ("invalid JSON", "INSERT INTO t (j) VALUES (:v)", {"v": "{not json"}),
]


@pytest.mark.parametrize("case", [c[0] for c in BAD_ROWS])
async def test_a_bad_row_is_not_an_outage(db_url, case):
    _, sql, params = next(c for c in BAD_ROWS if c[0] == case)
    engine = create_engine(db_url, pool_size=1)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite and case in ("NUL in text", "text too long", "invalid JSON"):
        pytest.skip("SQLite stores this value as it is")
    try:
        async with engine.begin() as conn:
            json_type = "TEXT" if sqlite else "JSON"
            await conn.execute(
                text(f"CREATE TABLE t (n BIGINT UNIQUE, s VARCHAR(64) NOT NULL DEFAULT '', j {json_type})")
            )
            await conn.execute(text("INSERT INTO t (n) VALUES (7)"))
        exc = await _error_of(engine, sql, params)
        assert not is_outage(exc), repr(exc)
    finally:
        await engine.dispose()


def test_sqlite_locked_is_an_outage_and_a_broken_statement_is_not(tmp_path):
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    assert "locked" in str(locked.value) and is_outage(locked.value)
    holder.rollback()
    with pytest.raises(sqlite3.OperationalError) as missing:
        other.execute("SELECT * FROM nowhere")
    assert not is_outage(missing.value)
    with pytest.raises(OverflowError) as big:
        other.execute("INSERT INTO t VALUES (?)", (2**70,))
    assert not is_outage(big.value)
    holder.close()
    other.close()


def test_os_errors_and_own_unavailability_are_outages():
    assert is_outage(ConnectionRefusedError(111, "refused"))
    assert is_outage(TimeoutError())
    assert is_outage(DatabaseUnavailable("queue kept"))
    assert not is_outage(ValueError("bad"))
    assert not is_outage(RuntimeError("bug"))
