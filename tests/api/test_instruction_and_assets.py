"""Instructions (SPEC §5.4) and asset recovery (SPEC §5.7)."""

from __future__ import annotations

from sqlalchemy import select, update

from aigate.clock import now_ms
from aigate.engine.periods import DAY_MS
from aigate.store import tables as t
from tests.gateway import base_config, start_gateway

INSTRUCTION = {
    "name": "test",
    "model": "gpt-4o-mini",
    "max_token": 321,
    "temperature": 0.5,
    "response_format": "json_object",
    "cost": {"asset": "ai_credit", "per_request": 2},
    "messages": [
        {"role": "system", "content": "you are a professional {{ .role }}."},
        {
            "role": "user",
            "multi_content": [
                {"type": "text", "text": "Tell me about the {{ .question }}. Age: {{ .patient.age }}"},
                {"type": "image_url", "image_url": {"url": "{{ .image_url }}"}},
            ],
        },
    ],
}
PARAMS = {"role": "doctor", "question": "H1N1", "patient": {"age": "24"}}


async def gateway(db_url, simulator):
    doc = base_config(db_url, simulator.url)
    doc["apps"][0]["instructions"] = [INSTRUCTION]
    return await start_gateway(doc)


async def call(gw, body, user="u1"):
    async with gw.session.post(gw.url + "/bp/ai/chat/instruction", json=body, headers=gw.user_headers(user)) as r:
        return r.status, await r.json()


async def test_instruction_renders_every_message_and_drops_an_absent_image(db_url, simulator):
    gw = await gateway(db_url, simulator)
    try:
        status, body = await call(gw, {"name": "test", "parameters": PARAMS})
        assert status == 200, body
        assert set(body) == {"instruction", "usage"} and "Simulated" in body["instruction"]["content"]
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        sent = simulator.requests[-1]["body"]
        assert sent["messages"][0] == {"role": "system", "content": "you are a professional doctor."}
        assert sent["messages"][1]["content"] == [{"type": "text", "text": "Tell me about the H1N1. Age: 24"}]
        assert sent["max_tokens"] == 321 and sent["temperature"] == 0.5
        assert sent["response_format"] == {"type": "json_object"}

        status, _ = await call(gw, {"name": "test", "parameters": {**PARAMS, "image_url": "https://x/a.png"}})
        assert status == 200
        parts = simulator.requests[-1]["body"]["messages"][1]["content"]
        assert parts[1] == {"type": "image_url", "image_url": {"url": "https://x/a.png"}}

        async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as r:
            assert (await r.json())["asset"][0]["quantity"] == 46  # cost 2, twice
    finally:
        await gw.close()


async def test_instruction_errors_name_the_parameter(db_url, simulator):
    gw = await gateway(db_url, simulator)
    try:
        status, err = await call(gw, {"name": "test", "parameters": {"role": "doctor"}})
        assert status == 400 and "parameters.question" in err["error"]["message"]
        status, err = await call(gw, {"name": "nope"})
        assert status == 404 and err["error"]["error_type"] == "item_not_found"
        status, err = await call(gw, {"parameters": PARAMS})
        assert status == 400 and "name" in err["error"]["message"]
        async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as r:
            assert (await r.json())["asset"][0]["quantity"] == 50
    finally:
        await gw.close()


async def test_recovery_tops_up_at_the_boundary_and_keeps_purchases(db_url, simulator):
    gw = await start_gateway(base_config(db_url, simulator.url))
    headers = gw.user_headers("u1")
    body = {
        "strategy": "free-normal",
        "parameters": {"example_string": "x"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    try:
        for _ in range(3):
            async with gw.session.post(gw.url + "/bp/ai/chat", json=body, headers=headers) as r:
                assert r.status == 200
        # pretend the balance was last recovered yesterday, on a fresh instance
        yesterday = now_ms() // DAY_MS * DAY_MS - DAY_MS
        async with gw.services.engine.begin() as conn:
            await conn.execute(update(t.user_assets).values(last_recovery_ms=yesterday))
        gw.services.prepared_assets = None
        async with gw.session.get(gw.url + "/bp/ai/assets", headers=headers) as r:
            [credit] = (await r.json())["asset"]
        assert credit["quantity"] == 50 and credit["last_recovery_time"].endswith("T00:00:00Z")
        async with gw.services.engine.connect() as conn:
            reasons = [
                (r.reason, r.delta_micros)
                for r in await conn.execute(select(t.asset_ledger).order_by(t.asset_ledger.c.id))
            ]
        assert reasons[-1] == ("recovery", 3_000_000)  # millionths

        # a purchase above the recovery quantity survives the next boundary
        async with gw.session.post(
            gw.url + "/bp/server/user/u1/ai/assets/grant",
            headers=gw.server_headers(),
            json={"asset": "ai_credit", "quantity": 25, "idempotency_key": "k1"},
        ) as r:
            assert r.status == 200
        async with gw.services.engine.begin() as conn:
            await conn.execute(update(t.user_assets).values(last_recovery_ms=yesterday))
        gw.services.prepared_assets = None
        async with gw.session.get(gw.url + "/bp/ai/assets", headers=headers) as r:
            assert (await r.json())["asset"][0]["quantity"] == 75
    finally:
        await gw.close()
