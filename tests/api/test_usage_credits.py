"""Credits that follow usage (SPEC 12): holds reserved before the call, settled with the
actual charge after it, released on failure, settled on a client disconnect; decimal
assets rendered with their precision; the ledger, the holds and the usage log agree."""

from __future__ import annotations

import asyncio
from decimal import ROUND_CEILING, Decimal

import orjson
import pytest
from sqlalchemy import select

from aigate.config.loader import ConfigError, parse_config
from aigate.providers.tokens import count_messages
from aigate.store import tables as t
from tests.gateway import APP_ID, base_config, start_gateway

IN_PRICE, OUT_PRICE = Decimal("1.5"), Decimal(4)  # credits per 1k tokens
MAX_TOKENS = 200
M = 1_000_000


def config(db_url, sim_url, *, initial="5", hold=None, precision=2):
    doc = base_config(db_url, sim_url)
    app = doc["apps"][0]
    app["assets"].append({"name": "credit", "initial_quantity": initial, "precision": precision})
    cost = {"asset": "credit", "per_1k_input_tokens": str(IN_PRICE), "per_1k_output_tokens": str(OUT_PRICE)}
    if hold is not None:
        cost["hold"] = hold
    app["strategies"].append(
        {
            "name": "tok",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "system_prompt": "Be brief.",
            "params": {"max_tokens": MAX_TOKENS},
            "cost": cost,
        }
    )
    app["instructions"] = [
        {
            "name": "ask",
            "model": "gpt-4o-mini",
            "max_token": 100,
            "messages": [{"role": "user", "content": "Tell me about {{ .topic }}."}],
            "cost": {"asset": "credit", "per_used_amount": 10000},
        }
    ]
    return doc


@pytest.fixture
async def gw(db_url, simulator):
    gateway = await start_gateway(config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


def up(value: Decimal, places: int = 2) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)


def charge_of(tokens: dict) -> Decimal:
    return up((tokens["prompt_tokens"] * IN_PRICE + tokens["completion_tokens"] * OUT_PRICE) / 1000)


def hold_of(text: str) -> Decimal:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    return up((count_messages(messages, "gpt-4o-mini") * IN_PRICE + MAX_TOKENS * OUT_PRICE) / 1000)


def chat(text="tell me a story"):
    return {"strategy": "tok", "messages": [{"role": "user", "content": text}]}


def credit(doc: dict):
    return next(a for a in doc["asset"] if a["name"] == "credit")["quantity"]


async def ledger(gw, user="u1"):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.asset_ledger)
                .where((t.asset_ledger.c.user_id == user) & (t.asset_ledger.c.asset == "credit"))
                .order_by(t.asset_ledger.c.id)
            )
        ).all()
        holds = (await conn.execute(select(t.asset_holds))).all()
    return [(r.reason, r.delta_micros, r.balance_micros, r.charge_micros) for r in rows], holds


async def log_rows(gw):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).order_by(t.usage_logs.c.id))).all()


async def test_a_call_is_settled_with_its_actual_charge(gw):
    async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
    charge, hold = charge_of(doc["tokens"]), hold_of("tell me a story")
    assert 0 < charge < hold
    assert credit(doc) == float(Decimal(5) - charge)  # the balance after settlement, 2 decimals
    entries, holds = await ledger(gw)
    assert entries == [
        ("initial", 5 * M, 5 * M, None),
        ("reserve", -int(hold * M), int((5 - hold) * M), None),
        ("settle", int((hold - charge) * M), int((5 - charge) * M), int(charge * M)),
    ]
    assert holds == []  # nothing left open
    [log] = await log_rows(gw)
    meta = log.metadata if isinstance(log.metadata, dict) else orjson.loads(log.metadata)
    assert meta["credits"] == {"asset": "credit", "charge": float(charge), "hold": float(hold)}
    async with gw.services.engine.connect() as conn:  # the AI request record has it too
        [record] = (await conn.execute(select(t.ai_requests.c.credits))).all()
    assert record.credits == meta["credits"]
    # the Admin API shows the settlement with its charge
    async with gw.session.get(gw.url + f"/api/apps/{APP_ID}/users/u1/ledger", headers=gw.admin_headers()) as resp:
        settle = (await resp.json())["data"]["ledger"][0]
    assert settle["reason"] == "settle" and settle["charge"] == float(charge)


async def test_the_final_stream_event_shows_the_settled_balance(gw):
    async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=chat(), headers=gw.user_headers("u1")) as resp:
        frames = [orjson.loads(line[6:]) async for line in resp.content if line.startswith(b"data: ")]
    final = frames[-1]
    assert final["is_finish"] is True
    assert credit(final) == float(Decimal(5) - charge_of(final["tokens"]))
    assert (await ledger(gw))[1] == []


async def test_a_call_whose_hold_the_balance_cannot_cover_is_refused(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url, initial="0.5"))
    try:
        async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
            assert resp.status == 402
            error = (await resp.json())["error"]
        assert error["error_type"] == "insufficient_asset" and "hold" in error["message"]
        entries, holds = await ledger(gw)
        assert entries == [("initial", M // 2, M // 2, None)] and holds == []
    finally:
        await gw.close()


async def test_an_upstream_failure_releases_the_whole_hold(gw, simulator):
    simulator.script([{"status": 500}] * 3)
    async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
        assert resp.status == 502
    hold = int(hold_of("tell me a story") * M)
    entries, holds = await ledger(gw)
    assert entries[1:] == [("reserve", -hold, 5 * M - hold, None), ("release", hold, 5 * M, None)]
    assert holds == []
    [log] = await log_rows(gw)
    meta = log.metadata if isinstance(log.metadata, dict) else orjson.loads(log.metadata)
    assert meta["credits"]["charge"] == 0


async def test_a_client_that_leaves_mid_stream_pays_for_what_was_generated(gw, simulator):
    simulator.script([{"chunks": 40, "chunk_interval_ms": 50}])
    resp = await gw.session.post(
        gw.url + "/bp/ai/chat/stream", json=chat("one two three four five six seven"), headers=gw.user_headers("u1")
    )
    got = 0
    async for line in resp.content:
        got += line.startswith(b"data: ")
        if got == 3:
            break
    resp.close()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await log_rows(gw):
            break
    [log] = await log_rows(gw)
    assert log.code == 499 and log.usage_estimated and 0 < log.output_tokens
    charge = up((log.input_tokens * IN_PRICE + log.output_tokens * OUT_PRICE) / 1000)
    entries, holds = await ledger(gw)
    assert [e[0] for e in entries] == ["initial", "reserve", "settle"] and holds == []
    assert entries[-1][3] == int(charge * M) and entries[-1][2] == int((5 - charge) * M)


async def test_below_zero_by_at_most_the_excess_over_the_hold(db_url, simulator):
    # a hold of 0.01 cannot cover the call: it is debited in full, then no call is accepted
    gw = await start_gateway(config(db_url, simulator.url, initial="0.02", hold="0.01"))
    try:
        async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
            doc = await resp.json()
        charge = charge_of(doc["tokens"])
        assert charge > Decimal("0.02")
        assert credit(doc) == float(Decimal("0.02") - charge)  # below zero by charge - hold - 0.01
        assert Decimal("0.02") - charge >= -(charge - Decimal("0.01"))
        async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
            assert resp.status == 402
    finally:
        await gw.close()


async def test_instructions_take_usage_based_costs(gw):
    async with gw.session.post(
        gw.url + "/bp/ai/chat/instruction",
        json={"name": "ask", "parameters": {"topic": "x"}},
        headers=gw.user_headers("u1"),
    ) as resp:
        assert resp.status == 200, await resp.text()
        usage = (await resp.json())["usage"]
    # per_used_amount: 10000 credits per unit of used_amount (gpt-4o-mini: 0.15 / 0.6 per 1M)
    used = (usage["prompt_tokens"] * Decimal("0.15") + usage["completion_tokens"] * Decimal("0.6")) / 1_000_000
    charge = up(used * 10000)
    entries, holds = await ledger(gw)
    assert entries[-1][0] == "settle" and entries[-1][3] == int(charge * M) and holds == []


def test_a_usage_based_cost_needs_a_hold_or_max_tokens():
    doc = config("sqlite:///x.db", "http://127.0.0.1:1")
    del doc["apps"][0]["strategies"][-1]["params"]["max_tokens"]
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    assert any(
        e.startswith("apps[0].strategies[1].cost.hold: a usage-based cost needs a hold") for e in exc.value.errors
    )
    doc["apps"][0]["strategies"][-1]["cost"]["hold"] = 3
    parse_config(doc, env={})


def test_cost_forms_are_checked():
    doc = config("sqlite:///x.db", "http://127.0.0.1:1")
    doc["apps"][0]["strategies"][-1]["cost"] = {"asset": "credit", "per_request": 1, "per_used_amount": 2}
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    assert any("apps[0].strategies[1].cost" in e and "per_used_amount" in e for e in exc.value.errors)


async def test_a_model_without_a_price_is_priced_from_the_database(db_url, simulator):
    doc = config(db_url, simulator.url)
    doc["models"] = [{"name": "gpt-4o-mini"}, {"name": "claude-3-5-haiku", "price": {"input_price": 0}}]
    gw = await start_gateway(doc)
    try:
        snap = gw.services.snapshot
        assert snap.price_sources["claude-3-5-haiku"] == "config" and snap.price("claude-3-5-haiku").output_price == 0
        assert snap.price_sources["gpt-4o-mini"].endswith("openai/gpt-4o-mini")
        async with gw.session.post(gw.url + "/bp/ai/chat", json=chat(), headers=gw.user_headers("u1")) as resp:
            tokens = (await resp.json())["tokens"]
        [log] = await log_rows(gw)
        assert log.price["input_price"] == 0.15 and log.price["output_price"] == 0.6
        expected = (tokens["prompt_tokens"] * Decimal("0.15") + tokens["completion_tokens"] * Decimal("0.6")) / 10**6
        assert Decimal(str(log.used_amount)) == expected
    finally:
        await gw.close()


async def test_a_settlement_queued_during_an_outage_applies_once(gw):
    from aigate.auth.caller import Caller
    from aigate.engine import metering
    from aigate.store.script import run_script

    services = gw.services
    caller = Caller(services.snapshot.apps[APP_ID], "u9", True)
    res = await metering.reserve(services, caller, "tok", caller.app.strategies["tok"].cost, None, "q1", hold=2 * M)
    metering.open_holds(services).pop(res.request_id)
    row = {"app": APP_ID, "user": "u9", "request_id": "q1", "asset": "credit", "charge": M // 2, "ts": 1}
    for _ in range(2):  # the writer may replay a batch: the hold is settled once
        await run_script(services.engine, metering.queued_settle_script, [row])
    entries, holds = await ledger(gw, "u9")
    assert [e[0] for e in entries] == ["initial", "reserve", "settle"] and holds == []
    assert entries[-1][2:] == (5 * M - M // 2, M // 2)


async def test_ai_request_strategies_take_usage_based_costs(db_url, simulator):
    doc = config(db_url, simulator.url)
    doc["apps"][0]["strategies"].append(
        {
            "name": "emb",
            "module": "embedding",
            "model": "text-embedding-3-small",
            "request": {"input": "{{ .text }}"},
            "cost": {"asset": "credit", "per_1k_input_tokens": 10, "hold": 1},
        }
    )
    gw = await start_gateway(doc)
    try:
        async with gw.session.post(
            gw.url + "/bp/ai/ai_request",
            json={"strategy": "emb", "parameters": {"text": "hello world " * 20}},
            headers=gw.user_headers("u1"),
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"] == "succeeded"
        [log] = await log_rows(gw)
        charge = up(Decimal(log.input_tokens) * 10 / 1000)
        entries, holds = await ledger(gw)
        assert [e[0] for e in entries] == ["initial", "reserve", "settle"] and holds == []
        assert entries[1][1] == -M and entries[-1][3] == int(charge * M) > 0
    finally:
        await gw.close()


async def test_a_grant_takes_decimals_up_to_the_asset_precision(gw):
    url = gw.url + "/bp/server/user/g1/ai/assets/grant"

    async def grant(asset, quantity, key):
        body = {"asset": asset, "quantity": quantity, "idempotency_key": key}
        async with gw.session.post(url, json=body, headers=gw.server_headers()) as resp:
            return resp.status, await resp.json()

    status, doc = await grant("credit", 2.25, "k1")  # precision 2
    assert status == 200 and doc["granted"] is True
    [credit] = [a for a in doc["asset"] if a["name"] == "credit"]
    assert credit["quantity"] == 7.25  # 5 + 2.25, exact
    status, doc = await grant("credit", 0.125, "k2")
    assert status == 400 and "quantity" in doc["error"]["message"] and "2 decimal" in doc["error"]["message"]
    status, doc = await grant("ai_credit", 1.5, "k3")  # precision 0: whole credits only
    assert status == 400 and doc["error"]["message"].startswith("quantity:")
    for bad in ("10", True, -1, 0, 1e13):
        status, doc = await grant("credit", bad, f"bad-{bad}")
        assert status == 400 and doc["error"]["message"].startswith("quantity:"), bad
