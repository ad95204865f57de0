"""Leases of credit holds: renewed while their calls run, swept when their instance died.

Each instance renews the leases of its own open holds (``metering.open_holds``) in one
statement batch every third of ``credits.hold_lease_s``, however many calls run. Every
instance also sweeps, every ``credits.sweep_interval_s``, holds whose lease lapsed: their
instance stopped renewing them, so it died mid-call (or hung longer than a lease). The
sweep **releases** such a hold in full (ledger ``expired``): the call never finished from
the client's side, like any failed call, and what it used is unknown. The sweep and the
call's own settlement both end a hold by deleting its row, so exactly one of them wins;
a settlement that finds its hold gone charges nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aigate.clock import now_ms
from aigate.engine import metering
from aigate.providers import tokens
from aigate.store.script import run_script

log = logging.getLogger("aigate.credits")

RENEW = "UPDATE asset_holds SET lease_until_ms = :lease WHERE request_id = :request_id"

# The lease condition is repeated on the outer statement so a hold renewed between the
# sub-select and the delete (PostgreSQL re-checks it on the locked row) is not swept.
SWEEP = """
DELETE FROM asset_holds WHERE lease_until_ms < :now AND request_id IN (
    SELECT request_id FROM asset_holds WHERE lease_until_ms < :now ORDER BY lease_until_ms LIMIT :batch)
RETURNING request_id, app_id, user_id, asset, amount_micros"""

SWEEP_BATCH = 500


def _renew_script(db, request_ids: list[str], lease_until: int) -> None:
    db.many(RENEW, [{"request_id": rid, "lease": lease_until} for rid in request_ids])


def sweep_script(db, ts: int) -> list[str]:
    """Release every hold whose lease lapsed (one batch); returns their request ids."""
    swept = []
    for request_id, app_id, user_id, asset, amount in db.rows(SWEEP, {"now": ts, "batch": SWEEP_BATCH}):
        who = {"app": app_id, "user": user_id}
        added = db.rows(metering.ADD, {**who, "asset": asset, "amount": amount, "ts": ts})
        if added:  # a user erased meanwhile has no balance left to give back to
            db.rows(metering.LEDGER, metering._ledger(who, asset, amount, added[0][0], "expired", ts, request_id))
        swept.append(request_id)
    return swept


async def renew(services: Any) -> int:
    """Extend the lease of every hold this process still runs a call for."""
    ids = list(metering.open_holds(services))
    if ids:
        await run_script(services.engine, _renew_script, ids, now_ms() + metering.lease_ms(services))
    return len(ids)


async def sweep(services: Any) -> list[str]:
    swept: list[str] = []
    while True:
        batch = await run_script(services.engine, sweep_script, now_ms())
        swept += batch
        if len(batch) < SWEEP_BATCH:
            break
    if swept:
        log.warning("released %d credit holds whose lease lapsed", len(swept), extra={"holds": swept[:20]})
    return swept


async def _loop(services: Any) -> None:
    cfg = services.config.credits
    renew_every = cfg.hold_lease_s / 3
    next_sweep = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await renew(services)
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + cfg.sweep_interval_s
                await sweep(services)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be down: try again next round
            log.exception("credit hold lease round failed")
        await asyncio.sleep(min(renew_every, cfg.sweep_interval_s))


def _usage_based(services: Any) -> bool:
    for app in services.config.apps:
        for item in (*app.strategies, *app.instructions):
            if item.cost is not None and item.cost.usage_based:
                return True
    return False


async def start(services: Any) -> None:
    tasks = [asyncio.create_task(_loop(services), name="credit-hold-leases")]
    if _usage_based(services):  # holds count prompt tokens: load the encodings off the loop now
        tasks.append(asyncio.create_task(asyncio.to_thread(tokens.warm), name="token-encodings"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    services.stoppers.append(stop)
