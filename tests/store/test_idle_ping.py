"""A pooled PostgreSQL connection is pinged at checkout only after it has been idle for
``PING_AFTER_IDLE_S``; one the server dropped while idle is then replaced unseen. A
connection used just before is handed out without a round trip, so one the server
dropped within that window fails its one transaction, and the next gets a new one."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from aigate.store import db as db_module
from aigate.store.db import create_engine
from aigate.store.outage import is_outage


async def _backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def _count_pings(engine) -> list[int]:
    pings = [0]
    dialect = engine.sync_engine.dialect
    real = dialect.do_ping

    def counted(dbapi_conn):
        pings[0] += 1
        return real(dbapi_conn)

    dialect.do_ping = counted
    return pings


async def test_a_connection_dropped_while_idle_is_replaced_at_checkout(pg_url, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # every checkout counts as idle
    engine = create_engine(pg_url, pool_size=1)
    try:
        pings = _count_pings(engine)
        first = await _backend_pid(engine)
        await _terminate(pg_url, first)
        second = await _backend_pid(engine)  # no error: the ping found it gone
        assert second != first
        assert pings[0] >= 2
    finally:
        await engine.dispose()


async def test_a_connection_used_just_before_is_not_pinged(pg_url, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)
    engine = create_engine(pg_url, pool_size=1)
    try:
        pings = _count_pings(engine)
        checkouts = [0]
        event.listen(engine.sync_engine, "checkout", lambda *_: checkouts.__setitem__(0, checkouts[0] + 1))
        for _ in range(5):
            await _backend_pid(engine)
        assert checkouts[0] == 5
        assert pings[0] == 0

        # dropped within the window: its one transaction fails as an outage, nothing
        # is written, and the next checkout opens a new connection
        first = await _backend_pid(engine)
        await _terminate(pg_url, first)
        with pytest.raises(DBAPIError) as failed:
            async with engine.begin() as conn:
                await conn.execute(text("SELECT 1"))
        assert is_outage(failed.value)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()
