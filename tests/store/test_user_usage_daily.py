"""The per-user daily rollup the console's user view reads: kept by the writer in the log
rows' own transaction, equal to what a scan of the log would sum, per user and UTC day."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import case, func, select

from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.sinks import current_rollups, register_sinks
from aigate.store.writer import BatchWriter

DAY = 86_400_000
START = 1_700_000_000_000 // DAY * DAY  # a UTC midnight


def row(i: int) -> dict:
    return dict(
        request_id=str(i),
        created_ms=START + (i % 3) * DAY + i * 1000,
        request_ms=START,
        code=500 if i % 5 == 0 else 200,
        app_id="APP" if i % 2 else "OTHER",
        model="m",
        user=f"u{i % 4}",
        metadata={},
        input_tokens=i,
        output_tokens=2 * i,
        total_tokens=3 * i,
        price={},
        used_amount=str(Decimal(i) / 1000),
    )


async def test_daily_totals_equal_the_logs_sums(db_url):
    engine = create_engine(db_url)
    await upgrade(engine)
    writer = BatchWriter(engine, flush_interval_s=0.02, batch_size=37)
    register_sinks(writer)
    writer.start()
    try:
        await asyncio.gather(*(writer.put("usage_log", row(i)) for i in range(1, 401)))
        await writer.flush()
        await current_rollups(engine)
        lg, d = t.usage_logs.c, t.user_usage_daily.c
        day = lg.created_ms // DAY * DAY
        async with engine.connect() as conn:
            scanned = {
                (r[0], r[1], int(r[2])): tuple(r[3:])
                for r in await conn.execute(
                    select(
                        lg.app_id,
                        lg.user,
                        day,
                        func.count(),
                        func.sum(case((lg.code != 200, 1), else_=0)),
                        func.sum(lg.input_tokens),
                        func.sum(lg.output_tokens),
                        func.sum(lg.total_tokens),
                        func.sum(lg.used_amount),
                    ).group_by(lg.app_id, lg.user, day)
                )
            }
            rolled = {
                (r[0], r[1], r[2]): tuple(r[3:])
                for r in await conn.execute(
                    select(
                        d.app_id,
                        d.user_id,
                        d.day_ms,
                        d.requests,
                        d.errors,
                        d.input_tokens,
                        d.output_tokens,
                        d.total_tokens,
                        d.used_amount,
                    )
                )
            }
        assert len(rolled) == 2 * 2 * 3  # apps x users per app x days
        assert {k: (*v[:5], Decimal(str(v[5]))) for k, v in rolled.items()} == {
            k: (*v[:5], Decimal(str(v[5]))) for k, v in scanned.items()
        }
    finally:
        await writer.stop()
        await engine.dispose()
