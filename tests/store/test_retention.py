"""Log retention: old rows, their details and rollups go; recent ones and exact counts stay."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from aigate.config.schema import Config
from aigate.engine import background, retention
from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.logs_query import LogFilter, counts_query, facets_from_counts
from aigate.store.migrate import upgrade
from aigate.store.sinks import current_rollups, register_sinks
from aigate.store.writer import BatchWriter

DAY = 86_400_000
NOW = 1_800_000_000_000 + 13 * 3_600_000 + 5  # mid-day, not aligned


def log_row(i: int, created_ms: int) -> dict:
    return {
        "request_id": str(5000 + i),
        "created_ms": created_ms,
        "request_ms": created_ms,
        "code": 200 if i % 3 else 500,
        "app_id": "APP",
        "model": "m",
        "user": f"u{i % 4}",
        "metadata": {"strategy": "s"},
        "input_tokens": 1,
        "output_tokens": 1,
        "total_tokens": 2,
        "price": {},
        "used_amount": "0.000001",
        "request_body": "body" if i % 2 else "",
    }


@pytest.fixture
async def engine(db_url):
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def count(engine, table, *where) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def search_total(engine, f: LogFilter) -> int:
    async with engine.connect() as conn:
        rows = (await conn.execute(counts_query(f, engine.dialect.name, NOW))).all()
    return facets_from_counts(rows).total


async def test_old_rows_details_and_rollups_are_deleted_in_batches(engine):
    writer = BatchWriter(engine, flush_interval_s=0.01)
    register_sinks(writer)
    writer.start()
    cutoff = retention.cutoff_ms(30, NOW)
    assert cutoff % DAY == 0 and NOW - 31 * DAY < cutoff <= NOW - 30 * DAY
    # 40 expired rows (some just before the cutoff), 25 kept (some exactly at it)
    old = [log_row(i, cutoff - 1 - i * 3_000_000) for i in range(40)]
    new = [log_row(100 + i, cutoff + i * 5_000_000) for i in range(25)]
    for row in old + new:
        await writer.put("usage_log", row)
    await writer.flush()
    await writer.stop()
    await current_rollups(engine)
    assert await count(engine, t.usage_logs) == 65

    deleted = await retention.purge_once(engine, 30, now=NOW, batch=7, pause_s=0)
    assert deleted == 40
    assert await count(engine, t.usage_logs) == 25
    assert await count(engine, t.usage_logs, t.usage_logs.c.created_ms < cutoff) == 0
    # details of the deleted rows went with them; the kept rows keep theirs
    assert await count(engine, t.request_details) == sum(1 for r in new if r["request_body"])
    for table in (t.usage_rollups, t.usage_rollups_hourly, t.usage_rollups_daily, t.usage_log_counts):
        assert await count(engine, table, table.c.bucket_ms < cutoff) == 0
        assert await count(engine, table) > 0
    # the counts behind search totals still match the log exactly
    for f in (
        LogFilter(),
        LogFilter(code_type="error"),
        LogFilter(start_ms=cutoff - DAY),
        LogFilter(start_ms=cutoff + 7, end_ms=NOW),
    ):
        want = sum(
            1
            for r in new
            if (f.code_type != "error" or r["code"] != 200)
            and (f.start_ms is None or r["created_ms"] >= f.start_ms)
            and (f.end_ms is None or r["created_ms"] < f.end_ms)
        )
        assert await search_total(engine, f) == want
    # a second pass finds nothing; retention 0 keeps everything
    assert await retention.purge_once(engine, 30, now=NOW, pause_s=0) == 0
    assert await retention.purge_once(engine, 0, now=NOW + 400 * DAY, pause_s=0) == 0
    assert await count(engine, t.usage_logs) == 25


async def test_start_runs_passes_in_the_background_and_stops(engine, monkeypatch):
    assert retention.start in background.STARTERS
    passes: list[int] = []

    async def fake_purge(eng, days, **kw):
        passes.append(days)
        return 0

    monkeypatch.setattr(retention, "purge_once", fake_purge)
    monkeypatch.setattr(retention, "FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(retention, "INTERVAL_S", 0.01)
    services = SimpleNamespace(engine=engine, config=Config(), stoppers=[])
    await retention.start(services)
    stoppers = services.stoppers
    assert len(stoppers) == 1
    await asyncio.sleep(0.2)
    await stoppers[0]()
    seen = len(passes)
    assert seen >= 2 and set(passes) == {30}
    await asyncio.sleep(0.05)
    assert len(passes) == seen  # stopped for good

    off = SimpleNamespace(engine=engine, config=Config(logs={"retention_days": 0}), stoppers=[])
    await retention.start(off)
    assert off.stoppers == []


async def test_stored_relay_responses_expire_with_the_log(engine):
    cutoff = retention.cutoff_ms(30, NOW)
    rows = [
        {
            "id": f"resp_{i}",
            "app_id": "APP",
            "token_id": 1,
            "model": "m",
            "created_ms": cutoff + (i - 5) * 1000,
            "conversation": [],
            "response": {},
        }
        for i in range(10)
    ]
    async with engine.begin() as conn:
        await conn.execute(t.relay_responses.insert(), rows)
    await retention.purge_once(engine, 30, now=NOW, batch=2, pause_s=0)
    async with engine.connect() as conn:
        kept = sorted((await conn.execute(select(t.relay_responses.c.id))).scalars())
    assert kept == [f"resp_{i}" for i in range(5, 10)]
