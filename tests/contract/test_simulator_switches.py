"""Simulator switches (parsing, sources, priority, every fault) and the control API."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson
import pytest

from aigate.simulator import switches
from aigate.simulator.server import create_app, start_simulator
from aigate.simulator.switches import SwitchError, Switches
from aigate.simulator.text import REPLY_PREFIX, count_tokens, split_chunks

AUTH = {"Authorization": "Bearer sk-test"}
CHAT = "/v1/chat/completions"


def chat(content: str = "hello", **extra: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def content_of(reply) -> str:
    return reply.json()["choices"][0]["message"]["content"]


# --- parsing ---------------------------------------------------------------------------------


def test_coerce_types_and_names():
    assert switches.coerce("latency-ms", "12.5") == ("latency_ms", 12.5)
    assert switches.coerce("chunks", 3.0) == ("chunks", 3)
    assert switches.coerce("usage", "off") == ("usage", False)
    assert switches.coerce("job_fail", "YES") == ("job_fail", True)
    assert switches.coerce("status", None) == ("status", None)
    assert switches.coerce("chunks", None) == ("chunks", 8)
    for name, value in [
        ("nope", 1),
        ("chunks", 0),
        ("status", 99),
        ("usage", "maybe"),
        ("latency_ms", -1),
        ("disconnect_after", True),
    ]:
        with pytest.raises(SwitchError):
            switches.coerce(name, value)


def test_directive_parsing():
    raw = orjson.dumps(chat('hi [[sim status=429 reply="two words" retry-after=1.5]] there'))
    assert switches.directive_overrides(raw) == {
        "status": 429,
        "reply": "two words",
        "retry_after": 1.5,
    }
    many = b'"[[sim chunks=2]] and [[sim chunks=3 usage=false]]"'
    assert switches.directive_overrides(many) == {"chunks": 3, "usage": False}
    assert switches.directive_overrides(b'{"content": "[[sim never closed"}') is None


def test_header_overrides_and_merge_priority():
    raw_headers = [(b"Content-Type", b"application/json"), (b"X-Sim-Status", b"503"), (b"x-sim-chunks", b"2")]
    found = switches.header_overrides(raw_headers)
    assert found == {"status": 503, "chunks": 2}
    assert switches.header_overrides([(b"Accept", b"*/*")]) is None
    defaults = switches.make_defaults({"latency_ms": 5, "status": None})
    merged = switches.merge(defaults, found, {"status": 429}, None, {"chunks": 1})
    assert merged == Switches(latency_ms=5, status=429, chunks=1)
    assert switches.merge(defaults, None, {}) is defaults


def test_split_chunks_and_count_tokens():
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    for text, n in [("", 8), ("abc", 8), ("hello world", 4), ("x" * 101, 8)]:
        pieces = split_chunks(text, n)
        assert "".join(pieces) == text
        assert len(pieces) == max(1, min(n, len(text)))
        assert all(pieces) or text == ""


def test_create_app_rejects_unknown_defaults():
    with pytest.raises(SwitchError):
        create_app(no_such_switch=1)
    create_app(latency_ms=None, require_key="k")  # None means "not given"


# --- timing ----------------------------------------------------------------------------------


async def test_latency_is_honoured(sim):
    started = time.monotonic()
    reply = await sim.post(CHAT, chat(), headers={**AUTH, "x-sim-latency-ms": "150"})
    assert reply.status == 200
    assert time.monotonic() - started >= 0.15


async def test_latency_default_from_the_server():
    handle = await start_simulator(latency_ms=120)
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(handle.url + CHAT, json=chat(), headers=AUTH) as resp:
                assert resp.status == 200
            assert time.monotonic() - started >= 0.12
    finally:
        await handle.close()


async def test_ttft_and_chunk_interval(sim):
    headers = {**AUTH, "x-sim-ttft-ms": "150", "x-sim-chunk-interval-ms": "40", "x-sim-chunks": "4"}
    started = time.monotonic()
    async with sim.session.post(sim.handle.url + CHAT, json=chat(stream=True), headers=headers) as resp:
        headers_at = time.monotonic() - started
        first = await resp.content.readuntil(b"\n\n")
        first_at = time.monotonic() - started
        rest = await resp.read()
        done_at = time.monotonic() - started
    assert first.startswith(b"data: ")
    assert first_at >= 0.15
    assert first_at - headers_at >= 0.05  # the delay comes after the headers
    assert done_at >= 0.15 + 3 * 0.04
    assert rest.endswith(b"data: [DONE]\n\n")


# --- faults ----------------------------------------------------------------------------------


async def test_status_with_retry_after(sim):
    reply = await sim.post(CHAT, chat(), headers={**AUTH, "x-sim-status": "429", "x-sim-retry-after": "2"})
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "2"
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    plain = await sim.post(CHAT, chat(), headers={**AUTH, "x-sim-status": "503"})
    assert "Retry-After" not in plain.headers


async def test_per_key_switches_hit_only_that_key(sim):
    keys = {"sk-bad": {"status": 401}, "sk-busy": {"status": 429, "retry_after": 3}}
    assert (await sim.post("/_sim/keys", keys)).status == 200
    assert (await sim.post("/_sim/keys", {"sk-x": {"nope": 1}})).status == 400  # unknown switches refused
    assert (await sim.post("/_sim/keys", keys)).status == 200
    assert (await sim.post(CHAT, chat(), headers={"Authorization": "Bearer sk-bad"})).status == 401
    busy = await sim.post(CHAT, chat(), headers={"Authorization": "Bearer sk-busy"})
    assert busy.status == 429 and busy.headers["Retry-After"] == "3"
    assert (await sim.post(CHAT, chat(), headers=AUTH)).status == 200
    anthropic = await sim.post(
        "/v1/messages",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "sk-bad", "anthropic-version": "2023-06-01"},
    )
    assert anthropic.status == 401


async def test_malformed_non_stream(sim):
    reply = await sim.post(CHAT, chat(), headers={**AUTH, "x-sim-malformed": "1"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(orjson.JSONDecodeError):
        reply.json()


async def test_malformed_stream_frame(sim):
    reply = await sim.post(
        CHAT, chat(stream=True), headers={**AUTH, "x-sim-malformed": "1", "x-sim-malformed-after": "3"}
    )
    frames = reply.frames()
    bad = []
    for index, frame in enumerate(frames):
        if frame.data == "[DONE]":
            continue
        try:
            frame.json()
        except orjson.JSONDecodeError:
            bad.append(index)
    assert bad == [4]  # role chunk + 3 content chunks, then the bad frame
    assert frames[-1].data == "[DONE]"


async def test_disconnect_mid_stream(sim):
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with sim.session.post(
            sim.handle.url + CHAT, json=chat(stream=True), headers={**AUTH, "x-sim-disconnect-after": "2"}
        ) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received += line
    assert received.count(b'"content"') == 3  # role chunk + 2 deltas
    assert b"[DONE]" not in received
    assert b'"finish_reason":"stop"' not in received


async def test_disconnect_without_response(sim):
    with pytest.raises(aiohttp.ClientConnectionError):
        async with sim.session.post(
            sim.handle.url + CHAT, json=chat(), headers={**AUTH, "x-sim-disconnect-after": "0"}
        ) as resp:
            await resp.read()
    assert (await sim.post(CHAT, chat(), headers=AUTH)).status == 200  # server still fine


async def test_reply_switch_is_used_verbatim(sim):
    reply = await sim.post(
        CHAT, chat(response_format={"type": "json_object"}), headers={**AUTH, "x-sim-reply": "not json"}
    )
    assert content_of(reply) == "not json"
    assert reply.json()["usage"]["completion_tokens"] == count_tokens("not json")


async def test_unknown_switch_is_a_400(sim):
    reply = await sim.post(CHAT, chat(), headers={**AUTH, "x-sim-lantecy-ms": "5"})
    assert reply.status == 400
    assert "lantecy" in reply.json()["error"]["message"]
    directive = await sim.post(CHAT, chat("[[sim chunks=zero]]"), headers=AUTH)
    assert directive.status == 400


# --- sources and priority --------------------------------------------------------------------


async def test_directive_steers_the_reply_and_is_not_echoed(sim):
    reply = await sim.post(CHAT, chat("tell me [[sim reasoning_tokens=4]] a story"), headers=AUTH)
    assert content_of(reply) == f"{REPLY_PREFIX} tell me a story"
    assert reply.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    quoted = await sim.post(CHAT, chat("[[sim reply='single quoted' chunks=2]]"), headers=AUTH)
    assert content_of(quoted) == "single quoted"


async def test_priority_script_over_directive_over_header_over_default():
    handle = await start_simulator(reply="from default", chunks=2)
    try:
        async with aiohttp.ClientSession() as session:

            async def reply_text(content: str, headers: dict) -> str:
                async with session.post(handle.url + CHAT, json=chat(content), headers={**AUTH, **headers}) as resp:
                    return (await resp.json())["choices"][0]["message"]["content"]

            header = {"x-sim-reply": "from header"}
            directive = "[[sim reply=from-directive]]"
            assert await reply_text("x", {}) == "from default"
            assert await reply_text("x", header) == "from header"
            assert await reply_text(directive, header) == "from-directive"
            handle.script([{"reply": "from script"}, {"status": 503}])
            assert await reply_text(directive, header) == "from script"
            async with session.post(handle.url + CHAT, json=chat(directive), headers=AUTH) as resp:
                assert resp.status == 503
                # a step overrides single switches: the directive's reply is still there
            assert await reply_text(directive, header) == "from-directive"
    finally:
        await handle.close()


async def test_script_over_http_runs_in_order_then_stops(sim):
    steps = [{"status": 429}, {"status": 500}, {"reply": "third"}]
    scripted = await sim.post("/_sim/script", steps)
    assert scripted.status == 200
    assert scripted.json() == {"queued": 3}
    statuses = [(await sim.post(CHAT, chat(), headers=AUTH)).status for _ in range(3)]
    assert statuses[:2] == [429, 500]
    assert statuses[2] == 200
    after = await sim.post(CHAT, chat(), headers=AUTH)
    assert content_of(after).startswith(REPLY_PREFIX)
    bad = await sim.post("/_sim/script", [{"bogus": 1}])
    assert bad.status == 400
    with pytest.raises(SwitchError):
        sim.handle.script([{"chunks": -1}])


async def test_script_steps_apply_to_every_format(sim):
    sim.handle.script([{"status": 529}, {"status": 429}])
    anthropic = await sim.post(
        "/v1/messages",
        {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert anthropic.status == 529
    assert anthropic.json()["error"]["type"] == "overloaded_error"
    gemini = await sim.post(
        "/v1beta/models/g:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}, headers={"x-goog-api-key": "k"}
    )
    assert gemini.status == 429
    assert gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


# --- control API -----------------------------------------------------------------------------


async def test_requests_are_recorded_verbatim(sim):
    await sim.post(CHAT, chat("recorded"), headers={"Authorization": "Bearer key-1"}, params={"trace": "1"})
    await sim.get("/v1/models", headers={"Authorization": "Bearer key-2"})
    recorded = (await sim.get("/_sim/requests")).json()
    assert [r["path"] for r in recorded] == [CHAT, "/v1/models"]
    first = recorded[0]
    assert first["method"] == "POST"
    assert first["query"] == {"trace": "1"}
    assert first["headers"]["authorization"] == "Bearer key-1"
    assert first["body"]["messages"][0]["content"] == "recorded"
    assert first["route"] == "POST /v1/chat/completions"
    assert recorded[1]["body"] is None
    assert sim.handle.requests == recorded


async def test_stats_and_reset(sim):
    for _ in range(2):
        await sim.post(CHAT, chat(), headers=AUTH)
    await sim.post(
        "/v1beta/models/g:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}, headers={"x-goog-api-key": "k"}
    )
    stats = (await sim.get("/_sim/stats")).json()
    assert stats == {"POST /v1/chat/completions": 2, "POST /v1beta/models/{model}:generateContent": 1}
    await sim.post("/_sim/script", [{"status": 500}])
    assert (await sim.post("/_sim/reset")).status == 200
    assert (await sim.get("/_sim/requests")).json() == []
    assert (await sim.get("/_sim/stats")).json() == {}
    assert (await sim.post(CHAT, chat(), headers=AUTH)).status == 200  # script cleared


async def test_record_limit(sim):
    state = sim.handle.state
    assert state.recorded.maxlen == 1000


async def test_unknown_route_is_404(sim):
    reply = await sim.get("/nope")
    assert reply.status == 404
    assert reply.headers["x-simulator"] == "aigate"


# --- the blocking runner ---------------------------------------------------------------------


async def test_run_serves_until_terminated():
    from tests.gateway import free_port

    port = free_port()
    code = f"from aigate.simulator import run; run(port={port}, reply='cli')"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.post(f"http://127.0.0.1:{port}{CHAT}", json=chat(), headers=AUTH) as resp:
                        data = await resp.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("simulator did not start")
        assert data["choices"][0]["message"]["content"] == "cli"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=5)
