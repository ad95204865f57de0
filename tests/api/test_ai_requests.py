"""POST .../ai/ai_request and GET .../ai/ai_request/{id}: every sync module, the seed 000
record, metering, failed calls and scoping, under both prefixes."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from aigate.store import tables as t
from tests.gateway import base_config, start_gateway

RECORD_FIELDS = {
    "request_id",
    "platform_id",
    "platform",
    "module",
    "strategy",
    "status",
    "response",
    "error",
    "unit_price",
    "custom_response",
    "created_time",
    "updated_time",
}
OTHER_APP = "APPOTHER"
OTHER_SERVER_KEY = "other-server-key-0123456789"
OTHER_SECRET = "other-token-secret-0123456789-abcdefgh"
JOB_OPTIONS = {
    "submit": {"method": "POST", "path": "/v1/jobs"},
    "job_id": "id",
    "poll": {"method": "GET", "path": "/v1/jobs/{job_id}"},
    "status": "status",
    "status_map": {"queued": "processing", "running": "processing", "succeeded": "succeeded", "failed": "failed"},
    "error": "error.message",
    "poll_interval_s": 0.05,
    "deadline_s": 10,
    "lease_s": 2,
}


def job_platform(sim_url: str, pid: str, max_concurrency: int | None = None, **options) -> dict:
    return {
        "id": pid,
        "type": "http_job",
        "base_url": sim_url,
        "api_key": "video-sim",
        "models": ["sim-video-1"],
        "options": {**JOB_OPTIONS, **options},
        "max_concurrency": max_concurrency,
        "timeout": {"connect_s": 2, "first_byte_s": 1, "total_s": 2},
    }


def strategies() -> list[dict]:
    video = {
        "module": "video",
        "model": "sim-video-1",
        "request": {"prompt": "{{ .prompt }}", "duration_s": "{{ .seconds }}"},
        "custom_response": {"video_url": "result.video_url"},
        "cost": {"asset": "ai_credit", "per_request": 10},
    }
    return [
        {
            "name": "dell-3",
            "module": "image",
            "model": "dall-e-3",
            "platforms": ["sim-openai"],
            "request": {"prompt": "{{ .prompt }}", "size": "1024x1024", "n": "{{ .n }}"},
            "custom_response": {"image_urls": "data[].url"},
            "cost": {"asset": "ai_credit", "per_request": 5},
        },
        {
            "name": "embed",
            "module": "embedding",
            "model": "text-embedding-3-small",
            "request": {"input": "{{ .text }}"},
        },
        {
            "name": "speak",
            "module": "audio",
            "model": "tts-1",
            "request": {"input": "{{ .text }}", "voice": "alloy", "response_format": "mp3"},
            "cost": {"asset": "ai_credit", "per_request": 2},
        },
        {
            "name": "ask",
            "module": "chat",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "system_prompt": "You answer as {{ .persona }}.",
            "request": {"messages": [{"role": "user", "content": "Question: {{ .question }}"}]},
            "cost": {"asset": "ai_credit", "per_request": 1},
        },
        {
            "name": "once",
            "module": "embedding",
            "model": "text-embedding-3-small",
            "request": {"input": "{{ .text }}"},
            "limit": {"count": 1, "period": "day"},
        },
        {"name": "video", "platforms": ["sim-video"], **video},
        {"name": "video-short", "platforms": ["sim-video-short"], **video},
        {"name": "video-one", "platforms": ["sim-video-one"], **video},
    ]


def ai_config(
    db_url: str, sim_url: str, *, redis_url: str = "", worker_id: int | None = None, store_bodies: str = "errors"
) -> dict:
    """The test config plus models, platforms and strategies of every module, and a second app."""
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    if worker_id is not None:
        doc["server"]["worker_id"] = worker_id
    doc["logs"] = {"store_bodies": store_bodies}
    doc["models"] += [
        {"name": "dall-e-3", "price": {"per_request_price": 0.04}},
        {"name": "text-embedding-3-small", "price": {"input_price": 0.02}},
        {"name": "tts-1", "price": {"input_price": 15}},
        {"name": "sim-video-1", "price": {"per_request_price": 0.5}},
    ]
    doc["platforms"] += [
        job_platform(sim_url, "sim-video"),
        job_platform(sim_url, "sim-video-short", deadline_s=0.4),
        job_platform(sim_url, "sim-video-one", max_concurrency=1),
    ]
    app = doc["apps"][0]
    app["strategies"] += strategies()
    other = {
        **app,
        "id": OTHER_APP,
        "server_keys": [{"name": "backend", "key": OTHER_SERVER_KEY}],
        "user_token_secret": OTHER_SECRET,
        "relay_tokens": [],
    }
    doc["apps"].append(other)
    return doc


@pytest.fixture
async def gw(db_url, simulator):
    gateway = await start_gateway(ai_config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


def prefix(user: str, via: str) -> str:
    return f"/bp/server/user/{user}/ai" if via == "server" else "/bp/ai"


def headers(gw, user: str, via: str) -> dict[str, str]:
    return gw.server_headers() if via == "server" else gw.user_headers(user)


async def submit(gw, user: str, strategy: str, parameters: dict | None = None, via: str = "server"):
    body = {"strategy": strategy, "parameters": parameters or {}}
    async with gw.session.post(
        gw.url + prefix(user, via) + "/ai_request", json=body, headers=headers(gw, user, via)
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def read(gw, user: str, request_id: str, via: str = "server", hdrs: dict | None = None):
    async with gw.session.get(
        gw.url + prefix(user, via) + f"/ai_request/{request_id}", headers=hdrs or headers(gw, user, via)
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def credits(gw, user: str) -> int:
    async with gw.session.get(gw.url + prefix(user, "server") + "/assets", headers=gw.server_headers()) as resp:
        return (await resp.json())["asset"][0]["quantity"]


async def db_rows(gw, table, *where):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(table).where(*where))).all()


async def test_image_returns_the_seed_record_and_reads_back_at_once(gw, simulator):
    for user, via in (("u1", "server"), ("u2", "client")):
        await check_image(gw, simulator, user, via)


async def check_image(gw, simulator, user: str, via: str) -> None:
    status, rec = await submit(gw, user, "dell-3", {"prompt": "a red fox", "n": 2}, via)
    assert status == 200, rec
    assert set(rec) == RECORD_FIELDS
    assert rec["status"] == "succeeded" and rec["error"] == ""
    assert (rec["module"], rec["strategy"], rec["platform"]) == ("image", "dell-3", "openai")
    assert rec["request_id"].isdigit() and rec["platform_id"].isdigit() and rec["platform_id"] != rec["request_id"]
    urls = rec["custom_response"]["image_urls"]
    assert len(urls) == 2 and all(u.startswith("https://simulator.invalid/images/") for u in urls)
    assert [d["url"] for d in json.loads(rec["response"])["data"]] == urls
    assert rec["unit_price"] == {"input_per_price": 0, "output_per_price": 0.04, "input_token": 0, "output_token": 1}
    assert rec["created_time"].endswith("Z") and "T" in rec["created_time"]
    assert rec["updated_time"] >= rec["created_time"]
    # the rendered request template, typed values kept, model added
    sent = simulator.requests[-1]
    assert sent["path"] == "/v1/images/generations"
    assert sent["body"] == {"prompt": "a red fox", "size": "1024x1024", "n": 2, "model": "dall-e-3"}
    # readable right away under either prefix (the record was group-committed)
    for reader in ("server", "client"):
        status, again = await read(gw, user, rec["request_id"], reader)
        assert status == 200 and again == rec
    assert await credits(gw, user) == 45

    [log] = await db_rows(gw, t.usage_logs, t.usage_logs.c.request_id == rec["platform_id"])
    assert log.code == 200 and log.mode == 3 and log.user == user
    assert log.model == "dall-e-3" and float(log.used_amount) == 0.04
    assert log.metadata["ai_request_id"] == rec["request_id"]
    [row] = await db_rows(gw, t.ai_requests, t.ai_requests.c.user_id == user)
    assert row.from_appserver is (via == "server")


async def test_embedding_record(gw, simulator):
    status, rec = await submit(gw, "u1", "embed", {"text": "hello world"})
    assert status == 200, rec
    assert rec["module"] == "embedding" and rec["status"] == "succeeded"
    assert rec["custom_response"] is None  # the strategy configures no fields
    response = json.loads(rec["response"])
    assert response["object"] == "list" and len(response["data"][0]["embedding"]) > 0
    assert simulator.requests[-1]["body"] == {"input": "hello world", "model": "text-embedding-3-small"}
    [log] = await db_rows(gw, t.usage_logs)
    assert log.mode == 2 and log.input_tokens == response["usage"]["prompt_tokens"] > 0


async def test_audio_returns_base64_and_logs_only_metadata(gw, simulator):
    status, rec = await submit(gw, "u1", "speak", {"text": "read this aloud"}, "client")
    assert status == 200, rec
    custom = rec["custom_response"]
    audio = base64.b64decode(custom["audio_base64"])
    assert custom["content_type"] == "audio/mpeg" and audio.startswith(b"\xff\xfb")
    meta = json.loads(rec["response"])
    assert meta == {"object": "audio.speech", "model": "tts-1", "content_type": "audio/mpeg", "bytes": len(audio)}
    assert simulator.requests[-1]["body"]["input"] == "read this aloud"
    [log] = await db_rows(gw, t.usage_logs)
    assert log.mode == 4 and log.usage_estimated and log.input_tokens > 0
    assert await credits(gw, "u1") == 48


async def test_chat_strategy_runs_single_shot(gw, simulator):
    status, rec = await submit(gw, "u1", "ask", {"persona": "a pirate", "question": "why is the sea salty?"})
    assert status == 200, rec
    assert rec["module"] == "chat" and rec["platform"] == "openai"
    assert "Simulated" in rec["custom_response"]["content"]
    assert json.loads(rec["response"])["choices"][0]["message"]["content"] == rec["custom_response"]["content"]
    assert simulator.requests[-1]["body"]["messages"] == [
        {"role": "system", "content": "You answer as a pirate."},
        {"role": "user", "content": "Question: why is the sea salty?"},
    ]
    # the client's own messages replace the template's
    messages = [{"role": "user", "content": "just this"}]
    status, rec = await submit(gw, "u1", "ask", {"persona": "a cat", "messages": messages})
    assert status == 200, rec
    assert simulator.requests[-1]["body"]["messages"][1:] == messages
    assert await db_rows(gw, t.chats) == []  # single shot: no chat history


async def test_bad_input_is_answered_and_recorded(gw):
    status, body = await submit(gw, "u1", "nope")
    assert status == 404 and body["error"]["error_type"] == "item_not_found"
    assert "request_id" in body["error"]["message"]
    status, body = await submit(gw, "u1", "dell-3", {"n": 1})
    assert status == 400 and body["error"]["error_type"] == "invalid_parameter"
    assert body["error"]["message"].startswith("parameters.prompt")
    status, body = await submit(gw, "u1", "ask", {"persona": "x", "messages": "hi"})
    assert status == 400 and body["error"]["message"].startswith("parameters.messages")
    async with gw.session.post(
        gw.url + prefix("u1", "server") + "/ai_request", data=b"{nope", headers=gw.server_headers()
    ) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["error_type"] == "invalid_parameter"

    recs = await db_rows(gw, t.ai_requests)
    assert sorted(r.strategy for r in recs) == ["ask", "dell-3", "nope"]
    assert all(r.status == "failed" and r.error for r in recs)
    logs = await db_rows(gw, t.usage_logs)
    assert sorted(log.code for log in logs) == [400, 400, 404]
    assert await credits(gw, "u1") == 50  # nothing was reserved


async def test_upstream_failure_refunds_exactly_once(gw, simulator):
    simulator.script([{"status": 500}] * 3)
    status, body = await submit(gw, "u1", "dell-3", {"prompt": "x", "n": 1})
    assert status == 502 and body["error"]["error_type"] == "upstream_error"
    assert await credits(gw, "u1") == 50
    [rec] = await db_rows(gw, t.ai_requests)
    assert rec.status == "failed" and rec.error.startswith("every platform tried failed")
    assert str(rec.request_id) in body["error"]["message"]
    ledger = await db_rows(gw, t.asset_ledger, t.asset_ledger.c.request_id == str(rec.request_id))
    assert sorted(e.reason for e in ledger) == ["refund", "reserve"]
    [log] = await db_rows(gw, t.usage_logs)
    assert log.code == 502 and log.retry_times == 2
    # the failed record reads back with the seed fields
    status, again = await read(gw, "u1", str(rec.request_id))
    assert status == 200 and again["status"] == "failed" and again["error"] == rec.error


async def test_limit_applies_per_strategy(gw):
    assert (await submit(gw, "u1", "once", {"text": "a"}))[0] == 200
    status, body = await submit(gw, "u1", "once", {"text": "b"})
    assert status == 429 and body["error"]["error_type"] == "limit_exceeded"
    assert (await submit(gw, "u2", "once", {"text": "c"}))[0] == 200
    statuses = sorted(r.status for r in await db_rows(gw, t.ai_requests, t.ai_requests.c.user_id == "u1"))
    assert statuses == ["failed", "succeeded"]


async def test_read_is_scoped_to_the_user_and_the_app(gw):
    _, rec = await submit(gw, "alice", "embed", {"text": "mine"})
    rid = rec["request_id"]
    assert (await read(gw, "alice", rid, "client"))[0] == 200
    for status, body in [
        await read(gw, "bob", rid, "server"),
        await read(gw, "bob", rid, "client"),
        # the same user id in another app
        await read(gw, "alice", rid, "server", {"Authorization": f"Bearer {OTHER_SERVER_KEY}"}),
        await read(gw, "alice", "12345", "server"),
        await read(gw, "alice", "not-a-number", "server"),
        await read(gw, "alice", "99999999999999999999999", "server"),
    ]:
        assert status == 404 and body["error"]["error_type"] == "item_not_found"
    async with gw.session.get(gw.url + f"/bp/ai/ai_request/{rid}") as resp:
        assert resp.status == 401

    # another app runs its own strategies; its records are not APPTEST's
    async with gw.session.post(
        gw.url + "/bp/server/user/alice/ai/ai_request",
        json={"strategy": "embed", "parameters": {"text": "x"}},
        headers={"Authorization": f"Bearer {OTHER_SERVER_KEY}"},
    ) as resp:
        rec = await resp.json()
        assert resp.status == 200
    [row] = await db_rows(gw, t.ai_requests, t.ai_requests.c.app_id == OTHER_APP)
    assert row.user_id == "alice" and str(row.request_id) == rec["request_id"]
    assert (await read(gw, "alice", rec["request_id"]))[0] == 404  # not visible from APPTEST
