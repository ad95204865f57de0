"""Usage-based credits under concurrency and faults (SPEC 12).

* 300 concurrent calls of mixed sizes on a token-priced strategy, on two instances sharing
  PostgreSQL and Redis, against a balance that cannot cover them all: the ledger sums to
  the balance, every call is reserved once and settled once, no hold is left open, and
  the balance never goes below zero by more than the documented excess.
* An instance killed (SIGKILL) between reserve and settle: its hold stays until its lease
  lapses, then another instance's sweep **releases** it (ledger ``expired``), once.
* A call that outlives several leases keeps its hold (its instance renews the lease).
* The sweep and a settlement racing for one hold: exactly one wins.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from decimal import ROUND_CEILING, Decimal

import aiohttp
import orjson
from sqlalchemy import func, select, update

from aigate.auth.caller import Caller
from aigate.engine import hold_leases, metering
from aigate.store import tables as t
from tests.gateway import APP_ID, SERVER_KEY, base_config, free_port, start_gateway
from tests.served import serve

N = 300
M = 1_000_000
IN_PRICE, OUT_PRICE = Decimal(2), Decimal(8)  # credits per 1k tokens
MAX_TOKENS = 300
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def config(db_url, sim_url, redis_url="", *, initial="20", hold=None, lease_s=60.0, sweep_s=15.0):
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    app = doc["apps"][0]
    app["assets"].append({"name": "credit", "initial_quantity": initial, "precision": 3})
    cost = {"asset": "credit", "per_1k_input_tokens": str(IN_PRICE), "per_1k_output_tokens": str(OUT_PRICE)}
    if hold is not None:
        cost["hold"] = hold
    app["strategies"].append(
        {
            "name": "tok",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "params": {"max_tokens": MAX_TOKENS},
            "cost": cost,
        }
    )
    doc["credits"] = {"hold_lease_s": lease_s, "sweep_interval_s": sweep_s}
    doc["database"]["pool_size"] = 6  # the PostgreSQL server is shared: stay well under its connection limit
    return doc


def sized_text(i: int) -> str:
    return " ".join(WORDS[j % len(WORDS)] for j in range(1 + (i * 37) % 400))  # 1..400 words


def mixed_script(n: int) -> list[dict]:
    return [{"reply": " ".join(WORDS[j % len(WORDS)] for j in range(1 + (i * 53) % 150))} for i in range(n)]


async def fire(urls: list[str], n: int) -> Counter:
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int):
            body = {"strategy": "tok", "messages": [{"role": "user", "content": sized_text(i)}]}
            async with session.post(
                urls[i % len(urls)] + "/bp/server/user/hammer/ai/chat", json=body, headers=headers
            ) as resp:
                data = await resp.json()
                return resp.status, (data.get("error") or {}).get("error_type", "ok")

        return Counter(await asyncio.gather(*(one(i) for i in range(n))))


async def books(gw) -> dict:
    async with gw.services.engine.connect() as conn:
        ledger = (
            await conn.execute(
                select(t.asset_ledger).where(t.asset_ledger.c.asset == "credit").order_by(t.asset_ledger.c.id)
            )
        ).all()
        balance = (
            await conn.execute(
                select(t.user_assets.c.quantity_micros).where(
                    (t.user_assets.c.name == "credit") & (t.user_assets.c.user_id == "hammer")
                )
            )
        ).scalar_one_or_none()
        holds = (await conn.execute(select(func.count()).select_from(t.asset_holds))).scalar_one()
        logs = (await conn.execute(select(t.usage_logs))).all()
    return {"ledger": ledger, "balance": balance, "holds": holds, "logs": logs}


def excess_bound(ledger) -> int:
    """The documented bound: the sum over calls of (actual charge − hold), where positive."""
    holds = {r.request_id: -r.delta_micros for r in ledger if r.reason == "reserve"}
    return sum(max(0, r.charge_micros - holds[r.request_id]) for r in ledger if r.reason == "settle")


def check_books(b: dict, served: int, initial: int) -> None:
    ledger = b["ledger"]
    assert sum(r.delta_micros for r in ledger) == b["balance"]  # the ledger sums to the balance
    assert b["holds"] == 0  # no hold left open
    per_call = defaultdict(list)
    for r in ledger:
        if r.request_id:
            per_call[r.request_id].append(r.reason)
    assert len(per_call) == served
    assert all(reasons == ["reserve", "settle"] for reasons in per_call.values()), Counter(
        map(tuple, per_call.values())
    )
    # each settlement charged exactly what the call's logged usage costs
    charges = {r.request_id: r.charge_micros for r in ledger if r.reason == "settle"}
    logged = {}
    for log in b["logs"]:
        meta = log.metadata if isinstance(log.metadata, dict) else orjson.loads(log.metadata)
        if log.code == 200:
            raw = (log.input_tokens * IN_PRICE + log.output_tokens * OUT_PRICE) / 1000
            logged[meta["ai_request_id"]] = int(raw.quantize(Decimal("0.001"), rounding=ROUND_CEILING) * M)
    assert charges == logged
    assert b["balance"] == initial - sum(charges.values())
    assert min(r.balance_micros for r in ledger) >= -excess_bound(ledger)


async def test_300_mixed_calls_on_two_instances_never_overspend(pg_url, redis_url, simulator):
    simulator.script(mixed_script(N))
    a = await start_gateway(config(pg_url, simulator.url, redis_url))
    b = await start_gateway(config(pg_url, simulator.url, redis_url))
    try:
        outcome = await fire([a.url, b.url], N)
        served = outcome[(200, "ok")]
        assert served + outcome[(402, "insufficient_asset")] == N, outcome
        assert 0 < served < N  # the balance could not cover them all
        await a.flush()
        await b.flush()
        result = await books(a)
        check_books(result, served, 20 * M)
        assert len(result["logs"]) == N
        assert min(r.balance_micros for r in result["ledger"]) >= 0  # charges stayed within their holds
    finally:
        await a.close()
        await b.close()


async def test_holds_smaller_than_the_charge_go_below_zero_by_the_excess_at_most(pg_url, redis_url, simulator):
    simulator.script(mixed_script(N))
    a = await start_gateway(config(pg_url, simulator.url, redis_url, initial="3", hold="0.05"))
    b = await start_gateway(config(pg_url, simulator.url, redis_url, initial="3", hold="0.05"))
    try:
        outcome = await fire([a.url, b.url], N)
        served = outcome[(200, "ok")]
        assert served + outcome[(402, "insufficient_asset")] == N and 0 < served < N, outcome
        await a.flush()
        await b.flush()
        result = await books(a)
        check_books(result, served, 3 * M)
        assert result["balance"] < 0 and excess_bound(result["ledger"]) > 0  # the rule was exercised
    finally:
        await a.close()
        await b.close()


async def test_a_killed_instance_leaves_a_hold_the_sweep_releases(db_url, simulator, tmp_path):
    if db_url.startswith("sqlite"):  # a file both processes open
        db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    port = free_port()
    doc = config(db_url, simulator.url, lease_s=1.0, sweep_s=0.3)
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    simulator.script([{"latency_ms": 30_000}])  # the call is still upstream when the instance dies
    proc = await serve(doc, tmp_path)
    survivor = None
    try:
        url = f"http://127.0.0.1:{port}"
        survivor = await start_gateway(config(db_url, simulator.url, lease_s=1.0, sweep_s=0.3))
        session = aiohttp.ClientSession()
        call = asyncio.create_task(
            session.post(
                url + "/bp/server/user/hammer/ai/chat",
                headers={"Authorization": f"Bearer {SERVER_KEY}"},
                json={"strategy": "tok", "messages": [{"role": "user", "content": "hello"}]},
            )
        )
        for _ in range(600):  # reserved: the hold row is there
            if (await books(survivor))["holds"] == 1:
                break
            await asyncio.sleep(0.05)
        assert (await books(survivor))["holds"] == 1
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        try:
            await call
        except aiohttp.ClientError:
            pass
        await session.close()
        for _ in range(100):  # the lease lapses (1 s), the survivor's sweep releases the hold
            if (await books(survivor))["holds"] == 0:
                break
            await asyncio.sleep(0.1)
        result = await books(survivor)
        assert result["holds"] == 0
        reasons = [(r.reason, r.delta_micros) for r in result["ledger"]]
        hold = -reasons[1][1]
        assert reasons == [("initial", 20 * M), ("reserve", -hold), ("expired", hold)]
        assert result["balance"] == 20 * M
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if survivor is not None:
            await survivor.close()


async def test_a_call_longer_than_its_lease_keeps_its_hold(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url, lease_s=0.6, sweep_s=0.1))
    try:
        simulator.script([{"latency_ms": 2000}])  # more than three leases
        async with gw.session.post(
            gw.url + "/bp/server/user/hammer/ai/chat",
            headers=gw.server_headers(),
            json={"strategy": "tok", "messages": [{"role": "user", "content": "hi"}]},
        ) as r:
            assert r.status == 200
        await gw.flush()
        reasons = [r.reason for r in (await books(gw))["ledger"]]
        assert reasons == ["initial", "reserve", "settle"]  # renewed, never swept
    finally:
        await gw.close()


async def test_the_sweep_and_a_settlement_never_both_end_a_hold(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url))
    services = gw.services
    caller = Caller(services.snapshot.apps[APP_ID], "hammer", True)
    cost = caller.app.strategies["tok"].cost
    try:
        for first in ("sweep", "settle"):
            res = await metering.reserve(services, caller, "tok", cost, None, f"race-{first}", hold=M)
            metering.open_holds(services).pop(res.request_id)  # as if its instance had died
            async with services.engine.begin() as conn:
                await conn.execute(update(t.asset_holds).values(lease_until_ms=0))
            if first == "sweep":
                assert await hold_leases.sweep(services) == [res.request_id]
                assert await metering.settle(services, res, M // 2) is False
            else:
                assert await metering.settle(services, res, M // 2) is True
                assert await hold_leases.sweep(services) == []
        reasons = [(r.request_id, r.reason, r.delta_micros) for r in (await books(gw))["ledger"]][1:]
        assert reasons == [
            ("race-sweep", "reserve", -M),
            ("race-sweep", "expired", M),
            ("race-settle", "reserve", -M),
            ("race-settle", "settle", M // 2),
        ]
        # both at once, many times: one winner each
        results = []
        for i in range(20):
            res = await metering.reserve(services, caller, "tok", cost, None, f"both-{i}", hold=M)
            metering.open_holds(services).pop(res.request_id)
            async with services.engine.begin() as conn:
                await conn.execute(update(t.asset_holds).values(lease_until_ms=0))
            swept, settled = await asyncio.gather(hold_leases.sweep(services), metering.settle(services, res, M))
            results.append((bool(swept), settled))
        assert all(s != st for s, st in results)
        b = await books(gw)
        assert b["holds"] == 0 and sum(r.delta_micros for r in b["ledger"]) == b["balance"]
    finally:
        await gw.close()
