"""POST .../ai/chat under both prefixes: the seed 002 contract, metering and records."""

from __future__ import annotations

import time

import jwt
import orjson
import pytest
from sqlalchemy import select

from aigate.store import tables as t
from tests.gateway import APP_ID, TOKEN_SECRET

PARAMS = {"example_string": "a pirate"}
HI = [{"role": "user", "content": "hello there"}]


def server_path(user: str, path: str) -> str:
    return f"/bp/server/user/{user}/ai{path}"


async def post(gw, path, body, headers):
    async with gw.session.post(gw.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def chat(gw, user="u1", body=None, via="server"):
    body = body or {"strategy": "free-normal", "messages": HI, "parameters": PARAMS}
    if via == "server":
        return await post(gw, server_path(user, "/chat"), body, gw.server_headers())
    return await post(gw, "/bp/ai/chat", body, gw.user_headers(user))


async def rows(gw, table, *where):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(table).where(*where))).all()


@pytest.mark.parametrize("via", ["server", "client"])
async def test_chat_answers_with_the_seed_shape(gw, simulator, via):
    status, body = await chat(gw, "u1", via=via)
    assert status == 200, body
    assert set(body) == {
        "asset",
        "chat_id",
        "current_count",
        "current_total_count",
        "reply",
        "tokens",
        "user_surplus_count",
    }
    assert body["reply"]["role"] == "assistant" and "Simulated" in body["reply"]["content"]
    assert len(body["chat_id"]) == 18 and body["chat_id"].isalnum()
    assert (body["current_count"], body["current_total_count"], body["user_surplus_count"]) == (1, 1, 99)
    [credit] = body["asset"]
    assert credit["name"] == "ai_credit" and credit["quantity"] == 49
    assert set(credit) == {
        "last_recovery_time",
        "name",
        "quantity",
        "recoverable",
        "recovery_period",
        "recovery_quantity",
        "type",
        "valid_seconds",
    }
    assert credit["last_recovery_time"].endswith("T00:00:00Z")
    tokens = body["tokens"]
    assert tokens["total_tokens"] == tokens["prompt_tokens"] + tokens["completion_tokens"] > 0
    sent = simulator.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "You play a pirate."}
    assert sent["messages"][1:] == HI
    assert sent["temperature"] == 1 and sent["max_tokens"] == 1000


async def test_every_call_leaves_a_log_row_and_a_request_record(gw):
    status, body = await chat(gw, "u1")
    assert status == 200
    [log] = await rows(gw, t.usage_logs)
    [rec] = await rows(gw, t.ai_requests)
    assert log.code == 200 and log.app_id == APP_ID and log.user == "u1" and log.model == "gpt-4o-mini"
    assert log.input_tokens == body["tokens"]["prompt_tokens"]
    assert log.used_amount > 0
    assert rec.status == "succeeded" and rec.platform == "openai" and rec.platform_id == log.request_id
    assert rec.from_appserver is True and rec.module == "chat" and rec.strategy == "free-normal"
    assert log.metadata["ai_request_id"] == str(rec.request_id)


async def test_history_is_sent_upstream_and_saved(gw, simulator):
    _, first = await chat(gw, "u1")
    chat_id = first["chat_id"]
    status, second = await chat(
        gw,
        "u1",
        {
            "strategy": "free-normal",
            "chat_id": chat_id,
            "parameters": PARAMS,
            "messages": [{"role": "user", "content": "and then?"}],
        },
    )
    assert status == 200 and second["chat_id"] == chat_id
    sent = simulator.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == first["reply"]["content"]

    async with gw.session.get(
        gw.url + server_path("u1", f"/chat/history?chat_id={chat_id}"), headers=gw.server_headers()
    ) as resp:
        hist = await resp.json()
    assert hist["total_chat"] == 2
    newest = hist["chat_histories"][0]
    assert newest["messages"][-1] == {"role": "assistant", "content": second["reply"]["content"]}
    assert newest["messages"][0]["content"] == "and then?"
    assert set(newest) == {
        "chat_id",
        "app_id",
        "user_id",
        "token",
        "strategy",
        "role",
        "messages",
        "sys_created_time",
        "sys_updated_time",
    }

    async with gw.session.get(gw.url + "/bp/ai/chats", headers=gw.user_headers("u1")) as resp:
        chats = await resp.json()
    assert chats["total"] == 1 and chats["chats"][0]["title"] == "hello there"


async def test_another_users_chat_is_not_found(gw):
    _, first = await chat(gw, "alice")
    status, body = await chat(
        gw, "bob", {"strategy": "free-normal", "chat_id": first["chat_id"], "parameters": PARAMS, "messages": HI}
    )
    assert status == 404 and body["error"]["error_type"] == "item_not_found"
    async with gw.session.get(
        gw.url + f"/bp/ai/chat/history?chat_id={first['chat_id']}", headers=gw.user_headers("bob")
    ) as resp:
        assert resp.status == 404
    # bob was not charged for the refused call
    async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("bob")) as resp:
        assert (await resp.json())["asset"][0]["quantity"] == 50


async def test_delete_chats_is_idempotent_and_scoped(gw):
    _, mine = await chat(gw, "alice")
    _, theirs = await chat(gw, "bob")
    body = {"chat_ids": [mine["chat_id"], theirs["chat_id"], "nope"]}
    for _ in range(2):
        async with gw.session.post(gw.url + "/bp/ai/chat/delete", json=body, headers=gw.user_headers("alice")) as resp:
            assert resp.status == 200
    assert await rows(gw, t.chats, t.chats.c.user_id == "alice") == []
    assert len(await rows(gw, t.chats, t.chats.c.user_id == "bob")) == 1
    status, err = await post(gw, "/bp/ai/chat/delete", {"chat_ids": []}, gw.user_headers("alice"))
    assert status == 400 and "chat_ids" in err["error"]["message"]


BAD_BODIES = [
    ({"messages": HI}, "strategy"),
    ({"strategy": "free-normal", "parameters": PARAMS}, "messages"),
    ({"strategy": "free-normal", "messages": [], "parameters": PARAMS}, "messages"),
    ({"strategy": "free-normal", "messages": "hi", "parameters": PARAMS}, "messages"),
    (
        {"strategy": "free-normal", "messages": [{"role": "robot", "content": "x"}], "parameters": PARAMS},
        "messages[0].role",
    ),
    (
        {"strategy": "free-normal", "messages": [{"role": "user", "content": 5}], "parameters": PARAMS},
        "messages[0].content",
    ),
    ({"strategy": "free-normal", "messages": HI, "parameters": "x"}, "parameters"),
    ({"strategy": "free-normal", "messages": HI}, "parameters.example_string"),
    ({"strategy": 7, "messages": HI}, "strategy"),
    ({"strategy": "free-normal", "messages": HI, "parameters": PARAMS, "response_format": "xml"}, "response_format"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES)
async def test_bad_input_is_a_400_naming_the_field_and_costs_nothing(gw, body, field):
    status, err = await chat(gw, "u1", body)
    assert status == 400, err
    assert err["error"]["error_type"] == "invalid_parameter"
    assert field in err["error"]["message"]
    [log] = await rows(gw, t.usage_logs)
    assert log.code == 400 and field in log.content
    [detail] = await rows(gw, t.request_details)  # failures keep the body the client sent
    assert detail.log_id == log.id and orjson.loads(detail.request_body) == body
    [rec] = await rows(gw, t.ai_requests)
    assert rec.status == "failed"
    balances = await rows(gw, t.user_assets)
    assert all(b.quantity == 50 for b in balances)


async def test_malformed_json_unknown_strategy_and_size_limit(gw):
    async with gw.session.post(
        gw.url + server_path("u1", "/chat"), data=b"{not json", headers=gw.server_headers()
    ) as resp:
        assert resp.status == 400 and "body" in (await resp.json())["error"]["message"]
    status, err = await chat(gw, "u1", {"strategy": "nope", "messages": HI})
    assert status == 404 and err["error"]["error_type"] == "item_not_found" and "strategy" in err["error"]["message"]
    huge = {"strategy": "free-normal", "parameters": PARAMS, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    async with gw.session.post(gw.url + server_path("u1", "/chat"), json=huge, headers=gw.server_headers()) as resp:
        assert resp.status == 413


async def test_credentials_are_checked(gw):
    body = {"strategy": "free-normal", "messages": HI, "parameters": PARAMS}
    status, err = await post(gw, "/bp/ai/chat", body, {})
    assert status == 401 and err["error"]["error_type"] == "unauthorized"
    expired = jwt.encode({"app_id": APP_ID, "sub": "u1", "exp": int(time.time()) - 10}, TOKEN_SECRET, "HS256")
    status, err = await post(gw, "/bp/ai/chat", body, {"Authorization": f"Bearer {expired}"})
    assert status == 401 and "expired" in err["error"]["message"]
    forged = jwt.encode({"app_id": APP_ID, "sub": "u1", "exp": int(time.time()) + 60}, "x" * 32, "HS256")
    status, _ = await post(gw, "/bp/ai/chat", body, {"Authorization": f"Bearer {forged}"})
    assert status == 401
    status, _ = await post(gw, server_path("u1", "/chat"), body, {"Authorization": "Bearer wrong-key-123456789"})
    assert status == 401
    status, err = await post(gw, server_path("bad user!", "/chat"), body, gw.server_headers())
    assert status == 400 and "user_id" in err["error"]["message"]
    assert await rows(gw, t.usage_logs) == []  # unauthenticated attempts are metrics, not rows


async def test_upstream_500_then_success_retries_once_and_charges_once(gw, simulator):
    simulator.script([{"status": 500}, {}])
    status, body = await chat(gw, "u1")
    assert status == 200
    assert body["asset"][0]["quantity"] == 49
    [log] = await rows(gw, t.usage_logs)
    assert log.retry_times == 1 and log.retry_ms is not None and log.code == 200


async def test_all_platforms_down_is_502_and_refunds(gw, simulator):
    simulator.script([{"status": 503}] * 5)
    status, err = await chat(gw, "u1")
    assert status == 502 and err["error"]["error_type"] == "upstream_error"
    async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as resp:
        assert (await resp.json())["asset"][0]["quantity"] == 50
    [log] = await rows(gw, t.usage_logs)
    assert log.code == 502 and log.retry_times == 2
    ledger = [r.reason for r in await rows(gw, t.asset_ledger)]
    assert ledger == ["initial", "reserve", "refund"]
    # a failed call does not use up the limit either
    _, ok = await chat(gw, "u1")
    assert ok["current_count"] == 1


async def test_upstream_4xx_is_not_retried(gw, simulator):
    simulator.script([{"status": 400}, {}])
    status, err = await chat(gw, "u1")
    assert status == 400 and "upstream" in err["error"]["message"]
    [log] = await rows(gw, t.usage_logs)
    assert log.retry_times == 0


async def test_stalled_upstream_is_504_and_refunded(db_url, simulator):
    from tests.gateway import base_config, start_gateway

    doc = base_config(db_url, simulator.url)
    doc["platforms"][0]["timeout"] = {"connect_s": 1, "first_byte_s": 0.3, "total_s": 2}
    gw = await start_gateway(doc)
    try:
        simulator.script([{"latency_ms": 3000}] * 3)
        status, err = await chat(gw, "u1")
        assert status == 504 and err["error"]["error_type"] == "upstream_timeout"
        async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as resp:
            assert (await resp.json())["asset"][0]["quantity"] == 50
    finally:
        await gw.close()


async def test_assets_grant_is_idempotent(gw):
    body = {"asset": "ai_credit", "quantity": 100, "idempotency_key": "order-1"}
    for expected in (True, False):
        status, res = await post(gw, server_path("u1", "/assets/grant"), body, gw.server_headers())
        assert status == 200 and res["granted"] is expected
        assert res["asset"][0]["quantity"] == 150
    grants = await rows(gw, t.asset_ledger, t.asset_ledger.c.reason == "grant")
    assert len(grants) == 1 and grants[0].balance_micros == 150_000_000
    status, err = await post(gw, server_path("u1", "/assets/grant"), {**body, "quantity": -1}, gw.server_headers())
    assert status == 400 and "quantity" in err["error"]["message"]


async def test_mint_token_endpoint(gw):
    status, res = await post(gw, "/bp/server/user/u9/token", {"ttl_seconds": 60}, gw.server_headers())
    assert status == 200 and res["expires_at"].endswith("Z")
    claims = jwt.decode(res["token"], TOKEN_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u9" and claims["app_id"] == APP_ID
    status, _ = await chat(gw, body=None, via="client", user="u9")
    assert status == 200
