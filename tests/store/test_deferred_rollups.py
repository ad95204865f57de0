"""SQLite's rollups kept off the flush: the writer adds new log rows to them in batches
after its commits, summed in SQL (aigate.store.sinks.roll_up_new_rows), and readers add
what is left first (current_rollups). The sums must equal what the flush path adds."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from aigate.store import tables as t
from aigate.store import upkeep
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.script import run_script
from aigate.store.sinks import (
    ROLLUP_BATCH_ROWS,
    add_rollups,
    current_rollups,
    insert_usage_logs,
    register_sinks,
    roll_up_new_rows,
)
from aigate.store.upkeep import PART_ROWS
from aigate.store.writer import BatchWriter
from tests.store.test_keyword_index import RequestWaiting
from tests.store.test_writer import log_row

HOUR = 3_600_000
ROLLUP_TABLES = (
    t.usage_rollups,
    t.usage_rollups_hourly,
    t.usage_rollups_daily,
    t.user_usage_daily,
    t.usage_log_counts,
)


@pytest.fixture
async def make_engine(tmp_path):
    engines = []

    async def make(name: str):
        engine = create_engine(f"sqlite:///{tmp_path}/{name}.db")
        await upgrade(engine)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


def varied_rows(n: int) -> list[dict]:
    """Rows over three days and several apps, models, strategies (or none), users,
    channels, token names and status codes."""
    rows = []
    for i in range(n):
        rows.append(
            log_row(
                i,
                created_ms=1_700_000_000_000 + i * 977_777 % (72 * HOUR),
                app_id=("APP", "APP2", "APP3")[i % 3],
                model=("gpt-4o-mini", "claude-3-5-haiku")[i % 2],
                metadata={"strategy": ("free", "pro")[i % 4 % 2]} if i % 5 else {},
                user=f"u{i % 11}",
                channel=i % 4,
                token_name=("", "ios", "web")[i % 3],
                code=(200, 200, 200, 429, 502)[i % 5],
                input_tokens=i % 17,
                output_tokens=i % 13,
                total_tokens=i % 17 + i % 13,
                ttfb_ms=50 + i % 29,
                used_amount=str(Decimal("0.000105") * (1 + i % 6)),
            )
        )
    return rows


async def table_rows(engine, table) -> list[tuple]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table))).all()
    return sorted(tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in rows)


async def last_log_id(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.max(t.usage_logs.c.id)))).scalar_one()


async def rolled_through(engine) -> int:
    [(through,)] = await run_script(
        engine, lambda db: db.rows(f"SELECT rolled_through FROM {t.SQLITE_ROLLUP_STATE_TABLE}")
    )
    return through


@pytest.mark.parametrize(
    ("batch", "rows_per_batch"),
    [
        (lambda db: roll_up_new_rows(db, 64), 64),
        # a request's script waits at every part: each batch adds one part of the rows
        (lambda db: roll_up_new_rows(RequestWaiting(db)), PART_ROWS),
    ],
    ids=["batches of 64", "cut short by requests"],
)
async def test_the_batches_add_what_the_flush_adds(make_engine, batch, rows_per_batch):
    rows = varied_rows(700)
    flushed, deferred = await make_engine("flushed"), await make_engine("deferred")
    # the flush path: the rows and their rollups in one transaction (as on PostgreSQL)
    await run_script(flushed, insert_usage_logs, rows)
    await run_script(flushed, add_rollups, rows)
    # the deferred path: the rows first, then batches above the watermark
    await run_script(deferred, insert_usage_logs, rows)
    assert await table_rows(deferred, t.usage_rollups) == []
    batches = 0
    while (await run_script(deferred, batch)).more:
        batches += 1
    assert batches == 700 // rows_per_batch
    assert await rolled_through(deferred) == await last_log_id(deferred)
    assert await run_script(deferred, roll_up_new_rows) == (0, False)  # nothing is added twice
    for table in ROLLUP_TABLES:
        want, got = await table_rows(flushed, table), await table_rows(deferred, table)
        assert len(got) == len(want) > 0, table.name
        for w, g in zip(want, got, strict=True):
            assert g == pytest.approx(w, abs=1e-9), table.name


async def test_a_batch_far_behind_the_log_is_not_cut_short(make_engine, monkeypatch):
    monkeypatch.setattr(upkeep, "CATCH_UP_ROWS", 50)
    engine = await make_engine("aigate")
    await run_script(engine, insert_usage_logs, varied_rows(100))
    waiting = lambda db: roll_up_new_rows(RequestWaiting(db), 64)  # noqa: E731
    assert await run_script(engine, waiting) == (64, True)  # 100 behind: the whole batch
    assert await run_script(engine, waiting) == (PART_ROWS, True)  # 36 behind: one part
    assert await run_script(engine, waiting) == (4, False)
    assert await rolled_through(engine) == await last_log_id(engine)


async def test_readers_bring_the_rollups_up_to_date(make_engine):
    engine = await make_engine("aigate")
    rows = varied_rows(ROLLUP_BATCH_ROWS * 2 + 10)  # more than one batch
    await run_script(engine, insert_usage_logs, rows)
    await current_rollups(engine)
    assert await rolled_through(engine) == await last_log_id(engine)
    async with engine.connect() as conn:
        requests = (await conn.execute(select(func.sum(t.user_usage_daily.c.requests)))).scalar_one()
        counted = (
            await conn.execute(select(func.sum(t.usage_log_counts.c.logs)).where(t.usage_log_counts.c.grain_ms == HOUR))
        ).scalar_one()
    assert requests == counted == len(rows)


async def test_the_writer_adds_its_rows_to_the_rollups_after_its_commits(make_engine):
    engine = await make_engine("aigate")
    writer = BatchWriter(engine, flush_interval_s=0.01)
    register_sinks(writer)
    writer.start()
    try:
        for row in varied_rows(300):
            await writer.put("usage_log", row)
        await writer.flush()
        for _ in range(200):  # no reader asks: the writer's upkeep gets there by itself
            if await rolled_through(engine) == await last_log_id(engine):
                break
            await asyncio.sleep(0.02)
        assert await rolled_through(engine) == await last_log_id(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.sum(t.usage_rollups.c.requests)))).scalar_one() == 300
    finally:
        await writer.stop()
