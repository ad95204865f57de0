"""Log retention: usage logs older than ``logs.retention_days`` are deleted in the background.

* The cutoff is the start of the UTC day ``retention_days`` before now. Day-aligned, so the
  per-day search counts (``usage_log_counts``) lose exactly the rows the log loses and
  search totals stay exact.
* Log rows go with their request details, 5,000 ids per transaction with a pause between
  transactions, so the batched writer (SQLite's only connection) never waits long.
* The rollups (per minute, per hour, the log counts) older than the cutoff go too, a day
  of buckets per transaction.
* Responses the relay stored for ``previous_response_id`` (``relay_responses``) older
  than the cutoff go too, in batches like the log.
* A pass runs a minute after start and then every five minutes. ``retention_days: 0``
  keeps everything. Instances purging at the same time only repeat each other's work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.clock import now_ms
from aigate.store import rollups
from aigate.store import tables as t

log = logging.getLogger("aigate.retention")

DAY_MS = rollups.DAY_MS
FIRST_DELAY_S = 60.0
INTERVAL_S = 300.0
BATCH = 5_000
PAUSE_S = 0.2


def cutoff_ms(retention_days: int, now: int) -> int:
    """Rows created before this instant are expired."""
    return (now - retention_days * DAY_MS) // DAY_MS * DAY_MS


async def _purge_logs(engine: AsyncEngine, cutoff: int, batch: int, pause_s: float) -> int:
    logs, details = t.usage_logs.c, t.request_details.c
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(logs.id).where(logs.created_ms < cutoff).order_by(logs.created_ms).limit(batch)
                    )
                ).scalars()
            )
            if ids:
                await conn.execute(delete(t.request_details).where(details.log_id.in_(ids)))
                await conn.execute(delete(t.usage_logs).where(logs.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted
        await asyncio.sleep(pause_s)


async def _purge_responses(engine: AsyncEngine, cutoff: int, batch: int, pause_s: float) -> int:
    responses = t.relay_responses.c
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list(
                (await conn.execute(select(responses.id).where(responses.created_ms < cutoff).limit(batch))).scalars()
            )
            if ids:
                await conn.execute(delete(t.relay_responses).where(responses.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted
        await asyncio.sleep(pause_s)


def _rollup_targets() -> list[tuple[Any, ColumnElement[bool] | None]]:
    counts = t.usage_log_counts.c
    dashboard: list[tuple[Any, ColumnElement[bool] | None]] = [(r.table, None) for r in rollups.DASHBOARD.values()]
    # one grain at a time: the primary key starts with grain_ms, then bucket_ms
    return dashboard + [(t.usage_log_counts, counts.grain_ms == grain) for grain in rollups.LOG_COUNT_GRAINS]


async def _purge_rollups(engine: AsyncEngine, cutoff: int, pause_s: float) -> int:
    deleted = 0
    for table, scope in _rollup_targets():
        conds = [table.c.bucket_ms < cutoff] + ([scope] if scope is not None else [])
        while True:
            async with engine.begin() as conn:
                oldest = (await conn.execute(select(func.min(table.c.bucket_ms)).where(*conds))).scalar()
                if oldest is None:
                    break
                upto = min(cutoff, oldest + DAY_MS)
                result = await conn.execute(delete(table).where(table.c.bucket_ms < upto, *conds[1:]))
                deleted += result.rowcount or 0
            await asyncio.sleep(pause_s)
    return deleted


async def purge_once(
    engine: AsyncEngine,
    retention_days: int,
    *,
    now: int | None = None,
    batch: int = BATCH,
    pause_s: float = PAUSE_S,
) -> int:
    """Delete everything older than the cutoff; returns the number of log rows deleted."""
    if retention_days <= 0:
        return 0
    cutoff = cutoff_ms(retention_days, now if now is not None else now_ms())
    deleted = await _purge_logs(engine, cutoff, batch, pause_s)
    await _purge_rollups(engine, cutoff, pause_s)
    await _purge_responses(engine, cutoff, batch, pause_s)
    if deleted:
        log.info("retention deleted %d usage log rows older than %d", deleted, cutoff)
    return deleted


async def _loop(services: Any) -> None:
    await asyncio.sleep(FIRST_DELAY_S)
    while True:
        try:
            await purge_once(services.engine, services.config.logs.retention_days)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end retention for good
            log.exception("log retention pass failed")
        await asyncio.sleep(INTERVAL_S)


async def start(services: Any) -> None:
    if services.config.logs.retention_days <= 0:
        return
    task = asyncio.create_task(_loop(services), name="log-retention")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    services.stoppers.append(stop)
