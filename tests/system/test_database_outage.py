"""PostgreSQL stops under concurrent App API load (a private cluster, so the rest of the
suite keeps its server): calls answer 503 ``service_unavailable`` with ``Retry-After``
while it is down, and once it is back every answered call has its usage-log row and AI
request record (the calls answered 503 included), and each user's credits add up
(balance = initial - successful calls, and the ledger sums to the balance)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
from sqlalchemy import func, select

from aigate.store import tables as t
from tests.gateway import base_config, start_gateway
from tests.pgcluster import pg_cluster, private_pg  # noqa: F401  (fixtures)

CLIENTS = 8
INITIAL = 100_000
BODY = {
    "strategy": "free-normal",
    "parameters": {"example_string": "x"},
    "messages": [{"role": "user", "content": "hi"}],
}


async def _load(gw, stop: asyncio.Event, outcomes: dict[str, Counter], retry_after: list[str]) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(n: int) -> None:
            user = f"user{n}"
            url = f"{gw.url}/bp/server/user/{user}/ai/chat"
            while not stop.is_set():
                async with session.post(url, json=BODY, headers=gw.server_headers()) as resp:
                    data = await resp.json(content_type=None)
                    kind = "ok" if resp.status == 200 else data["error"]["error_type"]
                    outcomes[user][(resp.status, kind)] += 1
                    if resp.status == 503:
                        retry_after.append(resp.headers.get("Retry-After", ""))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def _run_outage(private_pg, simulator, tmp_path, *, outage_s: float, queue_size: int):  # noqa: F811
    doc = base_config(private_pg.url, simulator.url)
    doc["writer"] = {
        "flush_interval_ms": 20,
        "queue_size": queue_size,
        "batch_size": min(500, queue_size),
        "journal_dir": str(tmp_path / "journal"),
    }
    doc["apps"][0]["assets"][0].update(initial_quantity=INITIAL, recovery_quantity=INITIAL)
    gw = await start_gateway(doc)
    outcomes: dict[str, Counter] = {f"user{n}": Counter() for n in range(CLIENTS)}
    retry_after: list[str] = []
    stop = asyncio.Event()
    try:
        load = asyncio.create_task(_load(gw, stop, outcomes, retry_after))
        await asyncio.sleep(2)
        await private_pg.astop("fast")
        down_at = time.monotonic()
        await asyncio.sleep(outage_s / 2)
        async with gw.session.get(f"{gw.url}/api/platforms", headers=gw.admin_headers()) as resp:
            admin = resp.status, resp.headers.get("Retry-After"), await resp.json(content_type=None)
        assert admin[:2] == (503, "5") and admin[2]["success"] is False  # the Admin API too
        await asyncio.sleep(outage_s / 2)
        await private_pg.astart()
        up_after = time.monotonic() - down_at
        await asyncio.sleep(3)
        stop.set()
        await load
        await asyncio.wait_for(gw.services.writer.flush(through_outage=True), 60)
        totals = sum(outcomes.values(), Counter())
        assert totals[(200, "ok")] > 0
        assert totals[(503, "service_unavailable")] > 0, totals
        assert retry_after and all(v.isdigit() and int(v) > 0 for v in retry_after)
        assert set(totals) <= {(200, "ok"), (503, "service_unavailable")}, totals  # no 500, no hang

        async with gw.services.engine.connect() as conn:
            for user, seen in outcomes.items():
                ok = seen[(200, "ok")]
                logs = dict(
                    (
                        await conn.execute(
                            select(t.usage_logs.c.code, func.count())
                            .where(t.usage_logs.c.user == user)
                            .group_by(t.usage_logs.c.code)
                        )
                    ).all()
                )
                records = dict(
                    (
                        await conn.execute(
                            select(t.ai_requests.c.status, func.count())
                            .where(t.ai_requests.c.user_id == user)
                            .group_by(t.ai_requests.c.status)
                        )
                    ).all()
                )
                unavailable = seen[(503, "service_unavailable")]
                assert logs.get(200, 0) == ok, (user, logs, seen)
                assert records.get("succeeded", 0) == ok, (user, records, seen)
                # the calls answered 503 are recorded too, once the database is back
                assert logs.get(503, 0) == unavailable, (user, logs, seen)
                assert records.get("failed", 0) == unavailable, (user, records, seen)
                balance = (
                    await conn.execute(select(t.user_assets.c.quantity_micros).where(t.user_assets.c.user_id == user))
                ).scalar_one() // 1_000_000  # stored in millionths
                ledger = (
                    await conn.execute(
                        select(func.sum(t.asset_ledger.c.delta_micros)).where(t.asset_ledger.c.user_id == user)
                    )
                ).scalar_one() // 1_000_000
                assert balance == INITIAL - ok, (user, balance, ok)
                assert ledger == balance, (user, ledger, balance)
        return gw.services.writer, totals, up_after
    finally:
        stop.set()
        await gw.close()


async def test_outage_under_load_answers_503_and_loses_nothing(private_pg, simulator, tmp_path):  # noqa: F811
    writer, totals, up_after = await _run_outage(private_pg, simulator, tmp_path, outage_s=20, queue_size=20_000)
    assert up_after >= 20 and writer.outage_retries > 0


async def test_queue_full_during_outage_spills_to_the_journal_and_replays(private_pg, simulator, tmp_path):  # noqa: F811
    writer, totals, _ = await _run_outage(private_pg, simulator, tmp_path, outage_s=6, queue_size=50)
    assert writer.rows_journaled > 0  # the queue overflowed into the journal ...
    journals = list((tmp_path / "journal").glob("*.jsonl"))
    assert all(j.stat().st_size == 0 for j in journals)  # ... which was replayed (rows checked above)
