"""The simulator's Anthropic Messages wire format, over real HTTP."""

from __future__ import annotations

import pytest

from aigate.simulator.text import REPLY_PREFIX, count_tokens

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
STREAM_EVENTS = [
    "message_start",
    "content_block_start",
    "ping",
    *["content_block_delta"] * 8,
    "content_block_stop",
    "message_delta",
    "message_stop",
]


def body(content: object = "Hello Claude", **extra: object) -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


async def test_message_shape_and_usage(sim):
    reply = await sim.post("/v1/messages", body(system="Be brief."), headers=HEADERS)
    assert reply.status == 200
    assert reply.headers["x-simulator"] == "aigate"
    data = reply.json()
    assert data["id"].startswith("msg_sim")
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "claude-sonnet-4-5"
    assert data["stop_reason"] == "end_turn"
    assert data["stop_sequence"] is None
    [block] = data["content"]
    assert block == {"type": "text", "text": f"{REPLY_PREFIX} Hello Claude"}
    assert data["usage"] == {
        "input_tokens": 3 + count_tokens("Hello Claude") + 3 + count_tokens("Be brief."),
        "output_tokens": count_tokens(block["text"]),
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


async def test_system_blocks_and_image_content(sim):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.invalid/x.png"}},
        {"type": "text", "text": "what is this"},
    ]
    system = [{"type": "text", "text": "You are"}, {"type": "text", "text": "helpful."}]
    data = (await sim.post("/v1/messages", body(content, system=system), headers=HEADERS)).json()
    assert data["content"][0]["text"] == f"{REPLY_PREFIX} what is this"
    expected = 3 + count_tokens("what is this") + 3 + count_tokens("You are") + count_tokens("helpful.")
    assert data["usage"]["input_tokens"] == expected


async def test_stream_event_sequence(sim):
    plain = (await sim.post("/v1/messages", body(), headers=HEADERS)).json()
    reply = await sim.post("/v1/messages", body(stream=True), headers=HEADERS)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    frames = reply.frames()
    assert [f.event for f in frames] == STREAM_EVENTS
    assert all(f.json()["type"] == f.event for f in frames)
    start = frames[0].json()["message"]
    assert start["content"] == []
    assert start["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    assert frames[1].json()["content_block"] == {"type": "text", "text": ""}
    deltas = [f.json()["delta"] for f in frames if f.event == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == plain["content"][0]["text"]
    final = frames[-2].json()
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"output_tokens": plain["usage"]["output_tokens"]}


async def test_usage_switches(sim):
    headers = {**HEADERS, "x-sim-cached-tokens": "2", "x-sim-cache-creation-tokens": "1", "x-sim-reasoning-tokens": "5"}
    data = (await sim.post("/v1/messages", body(), headers=headers)).json()
    prompt = 3 + count_tokens("Hello Claude")
    assert data["usage"] == {
        "input_tokens": prompt - 2 - 1,
        "output_tokens": count_tokens(data["content"][0]["text"]) + 5,
        "cache_read_input_tokens": 2,
        "cache_creation_input_tokens": 1,
    }
    no_usage = (await sim.post("/v1/messages", body(), headers={**HEADERS, "x-sim-usage": "0"})).json()
    assert "usage" not in no_usage
    frames = (await sim.post("/v1/messages", body(stream=True), headers={**HEADERS, "x-sim-usage": "off"})).frames()
    assert "usage" not in frames[0].json()["message"]
    assert "usage" not in frames[-2].json()


@pytest.mark.parametrize(
    ("tool_choice", "name"),
    [({"type": "any"}, "lookup"), ({"type": "tool", "name": "fetch"}, "fetch")],
)
async def test_forced_tool_use(sim, tool_choice, name):
    tools = [
        {"name": "lookup", "input_schema": {"type": "object"}},
        {"name": "fetch", "input_schema": {"type": "object"}},
    ]
    data = (await sim.post("/v1/messages", body(tools=tools, tool_choice=tool_choice), headers=HEADERS)).json()
    assert data["stop_reason"] == "tool_use"
    [block] = data["content"]
    assert block["type"] == "tool_use"
    assert block["name"] == name
    assert block["input"] == {}
    assert block["id"].startswith("toolu_")
    frames = (
        await sim.post("/v1/messages", body(tools=tools, tool_choice=tool_choice, stream=True), headers=HEADERS)
    ).frames()
    opening = frames[1].json()["content_block"]
    assert opening["type"] == "tool_use"
    assert opening["name"] == name
    deltas = [f.json()["delta"] for f in frames if f.event == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert "".join(d["partial_json"] for d in deltas) == "{}"
    assert frames[-2].json()["delta"]["stop_reason"] == "tool_use"


async def test_auto_tool_choice_answers_with_text(sim):
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    data = (await sim.post("/v1/messages", body(tools=tools, tool_choice={"type": "auto"}), headers=HEADERS)).json()
    assert data["content"][0]["type"] == "text"


async def test_count_tokens(sim):
    data = (
        await sim.post(
            "/v1/messages/count_tokens",
            {"model": "m", "messages": [{"role": "user", "content": "abcdefgh"}]},
            headers=HEADERS,
        )
    ).json()
    assert data == {"input_tokens": 3 + 2}


# --- errors --------------------------------------------------------------------------------


def error_of(reply) -> dict:
    data = reply.json()
    assert data["type"] == "error"
    return data["error"]


async def test_anthropic_version_is_required(sim):
    reply = await sim.post("/v1/messages", body(), headers={"x-api-key": "k"})
    assert reply.status == 400
    assert error_of(reply)["type"] == "invalid_request_error"


async def test_max_tokens_is_required(sim):
    request = body()
    del request["max_tokens"]
    reply = await sim.post("/v1/messages", request, headers=HEADERS)
    assert reply.status == 400
    error = error_of(reply)
    assert error["type"] == "invalid_request_error"
    assert "max_tokens" in error["message"]


async def test_missing_key_is_authentication_error(sim):
    reply = await sim.post("/v1/messages", body(), headers={"anthropic-version": "2023-06-01"})
    assert reply.status == 401
    assert error_of(reply)["type"] == "authentication_error"
    # the current SDK's default: the key as a Bearer token, no x-api-key
    bearer = await sim.post(
        "/v1/messages", body(), headers={"anthropic-version": "2023-06-01", "Authorization": "Bearer k"}
    )
    assert bearer.status == 200


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (400, "invalid_request_error"),
        (401, "authentication_error"),
    ],
)
async def test_status_switch_answers_anthropic_errors(sim, status, kind):
    reply = await sim.post("/v1/messages", body(), headers={**HEADERS, "x-sim-status": str(status)})
    assert reply.status == status
    assert error_of(reply)["type"] == kind


async def test_mid_stream_error_event(sim):
    reply = await sim.post("/v1/messages", body(stream=True), headers={**HEADERS, "x-sim-error-after": "2"})
    assert reply.status == 200
    frames = reply.frames()
    assert [f.event for f in frames][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert frames[-1].json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": frames[-1].json()["error"]["message"]},
    }
    rate = await sim.post(
        "/v1/messages", body(stream=True), headers={**HEADERS, "x-sim-error-after": "0", "x-sim-status": "429"}
    )
    assert rate.status == 200
    assert rate.frames()[-1].json()["error"]["type"] == "rate_limit_error"


async def test_malformed_stream_frame(sim):
    frames = (
        await sim.post("/v1/messages", body(stream=True), headers={**HEADERS, "x-sim-malformed": "true"})
    ).frames()
    bad = [f for f in frames if not f.data.startswith("{") or not f.data.endswith("}")]
    assert len(bad) == 1
    assert frames.index(bad[0]) == 4  # after message_start, block start, ping and 1 delta
    assert frames[-1].event == "message_stop"
