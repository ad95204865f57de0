"""POST .../ai/chat/stream: SSE frames as in seed 002, errors before and after the first byte,
and a client that goes away mid-stream."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlalchemy import select

from aigate.store import tables as t

PARAMS = {"example_string": "a pirate"}


def body(text="tell me a story", **extra):
    return {"strategy": "free-normal", "parameters": PARAMS, "messages": [{"role": "user", "content": text}], **extra}


async def read_events(resp) -> list[tuple[str, dict]]:
    events, event = [], ""
    async for line in resp.content:
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, orjson.loads(line[6:])))
    return events


async def rows(gw, table):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(table))).all()


async def balance(gw, user):
    async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers(user)) as resp:
        return (await resp.json())["asset"][0]["quantity"]


@pytest.mark.parametrize("prefix", ["/bp/ai", "/bp/server/user/u1/ai"])
async def test_stream_frames_join_to_the_reply(gw, simulator, prefix):
    headers = gw.user_headers("u1") if prefix == "/bp/ai" else gw.server_headers()
    async with gw.session.post(gw.url + prefix + "/chat/stream", json=body(), headers=headers) as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = await read_events(resp)
    assert all(name == "ai_chat_msg" for name, _ in events)
    *deltas, final = [data for _, data in events]
    assert len(deltas) >= 2 and not any(d["is_finish"] for d in deltas)
    assert final["is_finish"] is True and final["content"] == ""
    chat_id = final["chat_id"]
    assert len(chat_id) == 18 and all(d["chat_id"] == chat_id for d in deltas)
    reply = "".join(d["content"] for d in deltas)
    assert "Simulated" in reply
    assert final["tokens"]["total_tokens"] > 0 and final["current_count"] == 1
    assert final["asset"][0]["quantity"] == 49
    assert simulator.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    [log] = await rows(gw, t.usage_logs)
    assert log.code == 200 and log.output_tokens == final["tokens"]["completion_tokens"]
    assert log.usage_estimated is False
    [exchange] = await rows(gw, t.chat_exchanges)
    assert exchange.messages[-1] == {"role": "assistant", "content": reply}


@pytest.mark.parametrize("model_strategy", ["claude", "gemini"])
async def test_stream_through_anthropic_and_gemini(db_url, simulator, model_strategy):
    from tests.gateway import base_config, start_gateway

    doc = base_config(db_url, simulator.url)
    model = {"claude": "claude-3-5-haiku", "gemini": "gemini-2.0-flash"}[model_strategy]
    doc["apps"][0]["strategies"].append({"name": "other", "model": model, "system_prompt": "Be brief."})
    gw = await start_gateway(doc)
    try:
        req = {"strategy": "other", "messages": [{"role": "user", "content": "hi"}]}
        async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=req, headers=gw.user_headers("u1")) as resp:
            events = await read_events(resp)
        *deltas, final = [d for _, d in events]
        assert "Simulated" in "".join(d["content"] for d in deltas)
        assert final["is_finish"] and final["tokens"]["completion_tokens"] > 0
        assert final["chat_id"] == ""  # this strategy does not save history
        async with gw.session.post(gw.url + "/bp/ai/chat", json=req, headers=gw.user_headers("u1")) as resp:
            once = await resp.json()
        assert once["reply"]["content"] == "".join(d["content"] for d in deltas)
    finally:
        await gw.close()


async def test_error_before_the_first_byte_is_plain_json(gw, simulator):
    simulator.script([{"status": 503}] * 3)
    async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=body(), headers=gw.user_headers("u1")) as resp:
        assert resp.status == 502
        assert (await resp.json())["error"]["error_type"] == "upstream_error"
    assert await balance(gw, "u1") == 50
    async with gw.session.post(
        gw.url + "/bp/ai/chat/stream", json={"strategy": "free-normal"}, headers=gw.user_headers("u1")
    ) as resp:
        assert resp.status == 400 and "messages" in (await resp.json())["error"]["message"]


async def test_stream_fails_over_before_the_first_byte(gw, simulator):
    simulator.script([{"status": 500}, {}])
    async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=body(), headers=gw.user_headers("u1")) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    assert events[-1][1]["is_finish"] is True
    [log] = await rows(gw, t.usage_logs)
    assert log.retry_times == 1


async def test_error_after_the_stream_started_is_an_error_event(gw, simulator):
    simulator.script([{"disconnect_after": 2, "chunks": 6}])
    async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=body(), headers=gw.user_headers("u1")) as resp:
        assert resp.status == 200
        events = await read_events(resp)
    names = [name for name, _ in events]
    assert names[-1] == "ai_chat_error" and names.count("ai_chat_error") == 1
    assert events[-1][1]["error"]["error_type"] == "upstream_error"
    assert all(not d.get("is_finish") for n, d in events if n == "ai_chat_msg")
    assert await balance(gw, "u1") == 50  # a broken stream is refunded
    [log] = await rows(gw, t.usage_logs)
    assert log.code == 502


async def test_client_disconnect_stops_upstream_and_bills_the_partial_reply(gw, simulator):
    simulator.script([{"chunks": 40, "chunk_interval_ms": 50}])
    resp = await gw.session.post(gw.url + "/bp/ai/chat/stream", json=body(), headers=gw.user_headers("u1"))
    got = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            got.append(orjson.loads(line[6:]))
        if len(got) == 3:
            break
    resp.close()  # the client goes away
    for _ in range(100):
        await asyncio.sleep(0.05)
        logs = await rows(gw, t.usage_logs)
        if logs:
            break
    [log] = logs
    assert log.code == 499 and "disconnected" in log.content
    assert log.usage_estimated is True and log.output_tokens > 0
    [exchange] = await rows(gw, t.chat_exchanges)
    partial = exchange.messages[-1]["content"]
    assert partial.startswith("".join(d["content"] for d in got))
    assert await balance(gw, "u1") == 49  # charged exactly once
    # the upstream read stopped early: the saved text is a strict prefix of the whole reply
    async with gw.session.post(gw.url + "/bp/ai/chat", json=body(), headers=gw.user_headers("u2")) as r:
        full = (await r.json())["reply"]["content"]
    assert partial and full.startswith(partial) and len(partial) < len(full)
