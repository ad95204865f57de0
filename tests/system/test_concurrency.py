"""No interleaving of concurrent requests overspends credits, exceeds a limit or loses a
row: 300 concurrent chats by one user, on one instance and on two sharing PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest
from sqlalchemy import func, select

from aigate.store import tables as t
from tests.gateway import base_config, start_gateway

N = 300
BODY = {
    "strategy": "free-normal",
    "parameters": {"example_string": "x"},
    "messages": [{"role": "user", "content": "hi"}],
}


def limited_config(db_url, sim_url, redis_url=""):
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["apps"][0]["strategies"].append(
        {"name": "limited", "model": "gpt-4o-mini", "limit": {"count": 50, "period": "day"}}
    )
    return doc


async def fire(urls: list[str], headers: dict, body: dict) -> Counter:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int):
            url = urls[i % len(urls)] + "/bp/server/user/hammer/ai/chat"
            async with session.post(url, json=body, headers=headers) as resp:
                data = await resp.json()
                return resp.status, (data.get("error") or {}).get("error_type", "ok")

        return Counter(await asyncio.gather(*(one(i) for i in range(N))))


async def check_books(gw, expected_successes: int) -> None:
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        logs = (await conn.execute(select(func.count()).select_from(t.usage_logs))).scalar_one()
        records = (await conn.execute(select(func.count()).select_from(t.ai_requests))).scalar_one()
        ok = (
            await conn.execute(select(func.count()).select_from(t.usage_logs).where(t.usage_logs.c.code == 200))
        ).scalar_one()
    assert logs == N and records == N  # every request has its row, rejected ones included
    assert ok == expected_successes


async def test_credits_are_never_overspent(db_url, simulator):
    gw = await start_gateway(base_config(db_url, simulator.url))
    try:
        outcome = await fire([gw.url], gw.server_headers(), BODY)
        assert outcome == {(200, "ok"): 50, (402, "insufficient_asset"): N - 50}
        async with gw.services.engine.connect() as conn:
            qty = (await conn.execute(select(t.user_assets.c.quantity_micros))).scalar_one()
            reserves = (
                await conn.execute(
                    select(func.count()).select_from(t.asset_ledger).where(t.asset_ledger.c.reason == "reserve")
                )
            ).scalar_one()
        assert qty == 0 and reserves == 50
        await check_books(gw, 50)
    finally:
        await gw.close()


async def test_limits_are_never_exceeded(db_url, simulator):
    gw = await start_gateway(limited_config(db_url, simulator.url))
    try:
        outcome = await fire([gw.url], gw.server_headers(), {**BODY, "strategy": "limited"})
        assert outcome == {(200, "ok"): 50, (429, "limit_exceeded"): N - 50}
        await check_books(gw, 50)
    finally:
        await gw.close()


@pytest.mark.parametrize(
    "strategy,expected", [("free-normal", (402, "insufficient_asset")), ("limited", (429, "limit_exceeded"))]
)
async def test_two_instances_on_postgres_and_redis(pg_url, redis_url, simulator, strategy, expected):
    a = await start_gateway(limited_config(pg_url, simulator.url, redis_url))
    b = await start_gateway(limited_config(pg_url, simulator.url, redis_url))
    try:
        assert a.services.ids.worker_id != b.services.ids.worker_id
        outcome = await fire([a.url, b.url], a.server_headers(), {**BODY, "strategy": strategy})
        assert outcome == {(200, "ok"): 50, expected: N - 50}
        await b.flush()
        await check_books(a, 50)
    finally:
        await a.close()
        await b.close()
