"""The OpenAI-compatible relay over raw HTTP: pass-through bytes, errors, limits, logs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import select

from aigate.clock import now_ms
from aigate.engine import relay_limits
from aigate.store import tables as t
from tests.gateway import APP_ID, RELAY_KEY, base_config, start_gateway

LIMITED_KEY = "sk-relay-limited-0123456789"  # allow-list: gpt-4o-mini only
RPM_KEY = "sk-relay-rpm3-0123456789"
TPM_KEY = "sk-relay-tpm10-0123456789"
SPEND_KEY = "sk-relay-spend-0123456789"
EXPIRED_KEY = "sk-relay-expired-0123456789"
OFF_KEY = "sk-relay-disabled-0123456789"
HI = [{"role": "user", "content": "hello there"}]


def relay_config(db_url: str, sim_url: str, canned_url: str = "", redis_url: str = "") -> dict[str, Any]:
    """base_config plus relay tokens with every kind of limit, prices for every model, a
    mapped alias, a platform with short timeouts and (optionally) a canned upstream."""
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["models"] += [
        {"name": "text-embedding-3-small", "price": {"input_price": 0.02}},
        {"name": "dall-e-3", "price": {"per_request_price": 0.04}},
        {"name": "gpt-alias", "price": {"input_price": 1, "output_price": 2}},
        {"name": "canned-model", "price": {"input_price": 1, "output_price": 1}},
    ]
    doc["platforms"] += [
        {
            "id": "sim-mapped",
            "type": "openai",
            "base_url": f"{sim_url}/v1",
            "api_key": "sk-sim",
            "models": ["gpt-alias"],
            "model_mapping": {"gpt-alias": "gpt-4o"},
        },
        {
            "id": "sim-slow",
            "type": "openai",
            "base_url": f"{sim_url}/v1",
            "api_key": "sk-sim",
            "models": ["gpt-slow"],
            "timeout": {"connect_s": 1, "first_byte_s": 0.2, "total_s": 2},
        },
    ]
    if canned_url:
        doc["platforms"].append(
            {"id": "canned", "type": "openai_compatible", "base_url": f"{canned_url}/v1", "models": ["canned-model"]}
        )
    doc["apps"][0]["relay_tokens"] += [
        {"name": "limited", "key": LIMITED_KEY, "models": ["gpt-4o-mini"]},
        {"name": "rpm3", "key": RPM_KEY, "rpm": 3},
        {"name": "tpm10", "key": TPM_KEY, "tpm": 10},
        {"name": "spend", "key": SPEND_KEY, "spend_limit": "0.000001"},
        {"name": "expired", "key": EXPIRED_KEY, "expires_at": "2020-01-01T00:00:00Z"},
        {"name": "disabled", "key": OFF_KEY, "enabled": False},
    ]
    return doc


# --- a canned OpenAI-compatible upstream: fixed bytes, spaced and escaped as no serialiser would

CHUNKS = [
    (
        b'{"id": "chatcmpl-canned",  "object": "chat.completion.chunk", "created": 1, "model": "canned-upstream",'
        b' "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],'
        b' "x_vendor": {"b": 1, "a": 2}}'
    ),
    (
        b'{"id":"chatcmpl-canned","object":"chat.completion.chunk","created":1,"model":"canned-upstream",'
        b'"choices":[{"index":0,"delta":{"content":"caf\\u00e9 "},"finish_reason":null}]}'
    ),
    (
        b'{"id":"chatcmpl-canned","object":"chat.completion.chunk","created":1,"model":"canned-upstream",'
        b'"choices":[{"index":0,"delta":{"content":"au lait"},"finish_reason":null}]}'
    ),
    (
        b'{"id":"chatcmpl-canned","object":"chat.completion.chunk","created":1,"model":"canned-upstream",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
    ),
]
USAGE_CHUNK = (
    b'{"id":"chatcmpl-canned","object":"chat.completion.chunk","created":1,"model":"canned-upstream",'
    b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}'
)
COMPLETION = (
    b'{"id": "chatcmpl-canned",  "object": "chat.completion", "created": 1, "model": "canned-upstream", '
    b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "caf\\u00e9"}, '
    b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3, '
    b'"total_tokens": 8}, "x_vendor": true}'
)


@pytest.fixture
async def canned():
    seen: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if not body.get("stream"):
            return web.Response(body=COMPLETION, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keep-alive\n\n")
        for chunk in [*CHUNKS, USAGE_CHUNK]:
            await resp.write(b"data: " + chunk + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield type("Canned", (), {"url": f"http://127.0.0.1:{port}", "requests": seen})
    finally:
        await runner.cleanup()


@pytest.fixture
async def rgw(db_url, simulator, canned):
    gateway = await start_gateway(relay_config(db_url, simulator.url, canned.url))
    try:
        yield gateway
    finally:
        await gateway.close()


# --- helpers


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(gw, path: str, body: Any, key: str = RELAY_KEY, headers: dict | None = None):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with gw.session.post(gw.url + path, data=data, headers=auth(key) if headers is None else headers) as resp:
        return resp.status, await resp.read(), resp.headers


async def chat(gw, body: dict, key: str = RELAY_KEY):
    status, raw, headers = await post(gw, "/v1/chat/completions", body, key)
    return status, orjson.loads(raw), headers


async def stream_frames(gw, body: dict, key: str = RELAY_KEY) -> list[bytes]:
    status, raw, headers = await post(gw, "/v1/chat/completions", {**body, "stream": True}, key)
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/event-stream")
    assert raw.endswith(b"\n\n")
    return raw.split(b"\n\n")[:-1]


async def log_rows(gw, *where):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).where(*where).order_by(t.usage_logs.c.id))).all()


def error_of(raw: bytes) -> dict:
    doc = orjson.loads(raw)
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}
    return doc["error"]


# --- pass-through


async def test_unknown_fields_reach_the_upstream_untouched(rgw, simulator):
    body = {
        "model": "gpt-4o-mini",
        "messages": HI,
        "temperature": 0.3,
        "seed": 7,
        "user": "alice",
        "response_format": {"type": "json_object"},
        "logit_bias": {"50256": -100},
        "x_unknown": {"nested": [1, "two", None]},
        "metadata": {"trace": "abc"},
    }
    status, answer, headers = await chat(rgw, body)
    assert status == 200, answer
    assert simulator.requests[-1]["body"] == body  # exactly what the client sent
    assert answer["system_fingerprint"] == "aigate-simulator"  # the upstream's own body
    assert orjson.loads(answer["choices"][0]["message"]["content"])  # JSON mode honoured upstream
    [row] = await log_rows(rgw)
    assert headers["x-request-id"] == row.request_id
    assert (row.user, row.token_name, row.app_id, row.code) == ("alice", "sdk", APP_ID, 200)


async def test_openai_format_bytes_are_returned_as_the_upstream_sent_them(rgw, canned):
    body = {"model": "canned-model", "messages": HI, "vendor_flag": True}
    status, raw, _ = await post(rgw, "/v1/chat/completions", body)
    assert status == 200 and raw == COMPLETION
    assert canned.requests[-1] == body

    frames = await stream_frames(rgw, body)  # no include_usage: the usage chunk is held back
    assert frames == [b"data: " + c for c in CHUNKS] + [b"data: [DONE]"]
    assert canned.requests[-1]["stream_options"] == {"include_usage": True}  # metering asks anyway

    frames = await stream_frames(rgw, {**body, "stream_options": {"include_usage": True}})
    assert frames == [b"data: " + c for c in [*CHUNKS, USAGE_CHUNK]] + [b"data: [DONE]"]

    rows = await log_rows(rgw)
    assert [(r.code, r.input_tokens, r.output_tokens) for r in rows] == [(200, 5, 3)] * 3
    assert all(r.used_amount > 0 and r.model == "canned-model" for r in rows)


async def test_streams_are_openai_chunks_whatever_the_upstream(rgw):
    for model in ["claude-3-5-haiku", "gemini-2.0-flash"]:
        frames = await stream_frames(rgw, {"model": model, "messages": HI, "stream_options": {"include_usage": True}})
        assert frames[-1] == b"data: [DONE]"
        assert all(f.startswith(b"data: {") for f in frames[:-1])
        chunks = [orjson.loads(f.removeprefix(b"data: ")) for f in frames[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert [c for c in chunks if not c["choices"]] == chunks[-1:]  # one usage chunk, last
        assert chunks[-1]["usage"]["total_tokens"] > 0
        frames = await stream_frames(rgw, {"model": model, "messages": HI})
        assert all(orjson.loads(f.removeprefix(b"data: "))["choices"] for f in frames[:-1])

    # the upstream reported no usage: the client that asked for it gets our estimate
    quiet = [{"role": "user", "content": "[[sim usage=false]] hello there"}]
    frames = await stream_frames(
        rgw, {"model": "gpt-4o-mini", "messages": quiet, "stream_options": {"include_usage": True}}
    )
    last = orjson.loads(frames[-2].removeprefix(b"data: "))
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    rows = await log_rows(rgw)
    assert [r.usage_estimated for r in rows] == [False] * 4 + [True]
    assert rows[-1].output_tokens == last["usage"]["completion_tokens"]


async def test_a_paced_stream_logs_the_bytes_it_sent(rgw, monkeypatch):
    """Content chunks that arrive one read at a time reach the client; the log row keeps
    the size of what was sent, with the upstream's usage."""
    cfg = rgw.services.config
    monkeypatch.setattr(
        rgw.services, "config", cfg.model_copy(update={"logs": cfg.logs.model_copy(update={"store_bodies": "all"})})
    )
    paced = [{"role": "user", "content": "[[sim chunks=6 chunk_interval_ms=20]] hello there"}]
    status, raw, _ = await post(
        rgw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": paced, "stream": True}
    )
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    chunks = [orjson.loads(f.removeprefix(b"data: ")) for f in raw.split(b"\n\n")[:-2]]
    assert all(c["choices"] for c in chunks)  # the usage chunk was not asked for: left out
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    [row] = await log_rows(rgw)
    async with rgw.services.engine.connect() as conn:
        detail = (await conn.execute(select(t.request_details).where(t.request_details.c.log_id == row.id))).one()
    summary = orjson.loads(detail.response_body)
    assert summary["streamed_bytes"] == len(raw) - len(b"data: [DONE]\n\n")
    assert summary["usage"]["completion_tokens"] == row.output_tokens > 0 and not row.usage_estimated
    assert len(text) >= 6


async def test_model_mapping_sends_the_mapped_name_and_logs_the_asked_one(rgw, simulator):
    status, answer, _ = await chat(rgw, {"model": "gpt-alias", "messages": HI})
    assert status == 200
    assert simulator.requests[-1]["body"]["model"] == "gpt-4o"
    assert answer["model"] == "gpt-4o"  # the upstream's field, untouched
    [row] = await log_rows(rgw)
    assert row.model == "gpt-alias" and row.price["input_price"] == 1 and row.used_amount > 0


# --- authentication and errors


async def test_keys_and_refusals_follow_openai_conventions(rgw):
    cases = [  # (key or headers, body, status, code, param)
        ({}, {"model": "gpt-4o-mini", "messages": HI}, 401, "invalid_api_key", None),
        (auth("sk-wrong-0123456789"), {"model": "gpt-4o-mini", "messages": HI}, 401, "invalid_api_key", None),
        (auth(EXPIRED_KEY), {"model": "gpt-4o-mini", "messages": HI}, 401, "invalid_api_key", None),
        (auth(OFF_KEY), {"model": "gpt-4o-mini", "messages": HI}, 401, "invalid_api_key", None),
        (auth(RELAY_KEY), b"{not json", 400, None, None),
        (auth(RELAY_KEY), {"messages": HI}, 400, "missing_required_parameter", "model"),
        (auth(RELAY_KEY), {"model": "gpt-4o-mini", "messages": []}, 400, None, "messages"),
        (auth(RELAY_KEY), {"model": "nope-1", "messages": HI}, 404, "model_not_found", "model"),
        (auth(LIMITED_KEY), {"model": "claude-3-5-haiku", "messages": HI}, 403, "model_not_found", "model"),
    ]
    for headers, body, status, code, param in cases:
        got, raw, _ = await post(rgw, "/v1/chat/completions", body, headers=headers)
        err = error_of(raw)
        assert (got, err["code"], err["param"]) == (status, code, param), (body, raw)
        assert err["type"] == "invalid_request_error"
    got, raw, _ = await post(rgw, "/v1/embeddings", {"model": "claude-3-5-haiku", "input": "x"})
    assert got == 400 and error_of(raw)["param"] == "model"
    got, raw, _ = await post(rgw, "/v1/embeddings", {"model": "text-embedding-3-small"})
    assert got == 400 and error_of(raw)["param"] == "input"
    got, raw, _ = await post(
        rgw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HI}, headers={"api-key": LIMITED_KEY}
    )  # Azure-style header
    assert got == 200, raw
    huge = {"model": "gpt-4o-mini", "messages": HI, "pad": "x" * 1_100_000}
    got, raw, _ = await post(rgw, "/v1/chat/completions", huge)
    assert got == 413 and error_of(raw)["type"] == "invalid_request_error"

    rows = await log_rows(rgw)  # refusals with a valid token are logged; bad keys are not
    assert [(r.code, r.token_name) for r in rows] == [
        (400, "sdk"),
        (400, "sdk"),
        (400, "sdk"),
        (404, "sdk"),
        (403, "limited"),
        (400, "sdk"),
        (400, "sdk"),
        (200, "limited"),
        (413, "sdk"),
    ]
    async with rgw.services.engine.connect() as conn:  # failures keep their body (store_bodies: errors)
        detail = (await conn.execute(select(t.request_details).where(t.request_details.c.log_id == rows[0].id))).one()
    assert detail.request_body == "{not json"
    assert all(r.endpoint.startswith("/v1/") for r in rows)


async def test_upstream_failures_map_to_openai_statuses(rgw, simulator):
    simulator.script([{"status": 429}] * 3)
    got, raw, _ = await post(rgw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HI})
    assert got == 429 and error_of(raw)["code"] == "rate_limit_exceeded"
    simulator.script([{"status": 503}] * 3)
    got, raw, _ = await post(rgw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HI})
    assert got == 502 and error_of(raw)["type"] == "server_error"
    got, raw, _ = await post(
        rgw,
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "[[sim status=400]]"}]},
    )
    assert got == 400 and error_of(raw)["type"] == "invalid_request_error"
    slow = [{"role": "user", "content": "[[sim latency_ms=600]]"}]
    got, raw, _ = await post(rgw, "/v1/chat/completions", {"model": "gpt-slow", "messages": slow})
    assert got == 504 and error_of(raw)["code"] == "timeout"

    simulator.script([{"status": 429}])  # a stream fails over before its first event
    frames = await stream_frames(rgw, {"model": "gpt-4o-mini", "messages": HI})
    assert frames[-1] == b"data: [DONE]"
    broken = [{"role": "user", "content": "[[sim error_after=2]]"}]
    frames = await stream_frames(rgw, {"model": "gpt-4o-mini", "messages": broken})
    assert error_of(frames[-1].removeprefix(b"data: "))["type"] == "server_error"  # in-stream error

    rows = await log_rows(rgw)
    assert [(r.code, r.retry_times) for r in rows] == [(429, 2), (502, 2), (400, 0), (504, 2), (200, 1), (502, 0)]
    assert rows[-1].output_tokens > 0  # the part streamed before the error is metered


async def leave_after(gw, frames: int, chunk_interval_ms: int) -> tuple[list[bytes], Any]:
    """Read ``frames`` frames of a slow stream, hang up, and return them with the one
    log row the call leaves (written after the disconnect is noticed)."""
    slow = [{"role": "user", "content": f"[[sim chunks=40 chunk_interval_ms={chunk_interval_ms}]] tell me a story"}]
    async with gw.session.post(
        gw.url + "/v1/chat/completions",
        headers=auth(RELAY_KEY),
        json={"model": "gpt-4o-mini", "messages": slow, "stream": True},
    ) as resp:
        got = [await resp.content.readuntil(b"\n\n") for _ in range(frames)]
        resp.close()
    for _ in range(100):
        rows = await log_rows(gw)
        if rows:
            break
        await asyncio.sleep(0.05)
    [row] = rows
    return got, row


async def test_client_disconnect_stops_the_stream_and_logs_what_was_sent(rgw):
    [first], row = await leave_after(rgw, 1, 50)
    assert first.startswith(b"data: {")
    assert row.code == 499 and row.usage_estimated and row.input_tokens > 0
    assert "disconnected" in row.content


async def test_a_client_that_leaves_mid_stream_is_billed_for_the_text_it_was_sent(rgw):
    """Reads passed on whole count once toward the partial reply (the adapter keeps the
    reply for the relay): the logged length is what the client got, up to one more read."""
    frames, row = await leave_after(rgw, 8, 30)
    deltas = [orjson.loads(f.removeprefix(b"data: "))["choices"][0]["delta"].get("content") or "" for f in frames]
    counted = int(row.content.split("after ")[1].split(" characters")[0])
    sent = sum(map(len, deltas))
    assert row.code == 499 and sent <= counted <= sent + 2 * max(map(len, deltas))


# --- limits


def one_window(monkeypatch) -> None:
    """Windows are calendar minutes: freeze the limits' clock so a test never straddles two."""
    frozen = now_ms()
    monkeypatch.setattr(relay_limits, "now_ms", lambda: frozen)


async def test_rpm_tpm_and_spend_limits(rgw, monkeypatch):
    async def call(key):
        return await post(rgw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HI}, key)

    one_window(monkeypatch)
    statuses = [(await call(RPM_KEY))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, raw, headers = await call(RPM_KEY)
    assert status == 429 and error_of(raw)["code"] == "rate_limit_exceeded"
    assert 1 <= int(headers["retry-after"]) <= 60

    assert (await call(TPM_KEY))[0] == 200  # uses more than 10 tokens
    status, raw, _ = await call(TPM_KEY)
    assert status == 429 and error_of(raw)["type"] == "tokens"

    assert (await call(SPEND_KEY))[0] == 200  # costs more than the limit
    status, raw, headers = await call(SPEND_KEY)
    assert status == 429 and error_of(raw)["code"] == "insufficient_quota"
    assert headers["x-should-retry"] == "false"

    # the spend total is seeded from the usage log: a fresh process refuses too
    await rgw.flush()
    rgw.services.relay_limits = None
    assert (await call(SPEND_KEY))[0] == 429

    rows = await log_rows(rgw, t.usage_logs.c.token_name.in_(["rpm3", "tpm10", "spend"]))
    assert [r.code for r in rows] == [200, 200, 200, 429, 429, 200, 429, 200, 429, 429]


async def test_rpm_is_shared_by_instances_through_redis(pg_url, redis_url, simulator, monkeypatch):
    doc = relay_config(pg_url, simulator.url, redis_url=redis_url)
    a = await start_gateway(doc)
    b = await start_gateway(doc)
    try:
        body = {"model": "gpt-4o-mini", "messages": HI}
        one_window(monkeypatch)
        got = [(await post(gw, "/v1/chat/completions", body, RPM_KEY))[0] for gw in (a, b, a, b)]
        assert got == [200, 200, 200, 429]
        assert (await post(a, "/v1/chat/completions", body, SPEND_KEY))[0] == 200
        assert (await post(b, "/v1/chat/completions", body, SPEND_KEY))[0] == 429
    finally:
        await a.close()
        await b.close()


async def test_models_list_is_scoped_by_the_token(rgw):
    async with rgw.session.get(rgw.url + "/v1/models", headers=auth(LIMITED_KEY)) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc == {
        "object": "list",
        "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}],
    }
    async with rgw.session.get(rgw.url + "/v1/models", headers=auth(RELAY_KEY)) as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert {"gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "gpt-alias", "canned-model"} <= set(ids)
    async with rgw.session.get(rgw.url + "/v1/models/claude-3-5-haiku", headers=auth(LIMITED_KEY)) as resp:
        assert resp.status == 404
    async with rgw.session.get(rgw.url + "/v1/models") as resp:
        assert resp.status == 401 and error_of(await resp.read())["code"] == "invalid_api_key"
