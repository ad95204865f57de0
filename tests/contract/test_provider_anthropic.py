"""Anthropic Messages adapter against the simulator: conversions, OpenAI-shaped output."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from aigate.providers import anthropic
from aigate.providers.base import ChatRequest, Platform, Timeouts, UpstreamError, UpstreamTimeout
from aigate.providers.registry import chat_provider
from aigate.simulator.server import start_simulator

REPLY = "Bonjour from the simulated Claude."
KEY = "sk-ant-test-key"
PNG_B64 = "iVBORw0KGgo="

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def sim():
    handle = await start_simulator(port=0)
    yield handle
    await handle.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def platform(sim, *, base: str = "", **kw) -> Platform:
    kw.setdefault("timeouts", Timeouts(connect_s=1, first_byte_s=2, total_s=5))
    return Platform(id="claude", number=3, type="anthropic", base_url=base or sim.url, api_key=KEY, **kw)


def request(**kw) -> ChatRequest:
    kw.setdefault("model", "claude-sonnet-4")
    kw.setdefault(
        "messages",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    return ChatRequest(**kw)


def provider():
    return chat_provider("anthropic")


async def collect(stream):
    return [event async for event in stream]


async def test_chat_text_usage_and_openai_document(sim, session) -> None:
    sim.script([{"reply": REPLY, "cached_tokens": 4, "cache_creation_tokens": 2}])
    result = await provider().chat(session, platform(sim), request())

    assert result.content == REPLY
    assert result.finish_reason == "stop"
    assert result.upstream_id.startswith("msg_")
    # prompt = (3 + ceil(9/4)) + (3 + ceil(9/4)) = 12; Anthropic reports 12 - 4 - 2 = 6
    u = result.usage
    assert (u.input_tokens, u.cached_tokens, u.cache_creation_tokens) == (12, 4, 2)
    assert u.output_tokens == (len(REPLY) + 3) // 4 and not u.estimated
    assert orjson.loads(result.raw)["usage"]["input_tokens"] == 6

    doc = result.openai
    assert doc["object"] == "chat.completion" and doc["id"] == result.upstream_id
    assert doc["model"] == "claude-sonnet-4"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": REPLY, "refusal": None}
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert doc["usage"]["prompt_tokens"] == 12
    assert doc["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert doc["usage"]["total_tokens"] == 12 + u.output_tokens

    sent = sim.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"] == {
        "model": "claude-sonnet-4",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Say hello"}],
        "system": "Be brief.",
    }


async def test_request_conversion(sim, session) -> None:
    messages = [
        {"role": "system", "content": "First rule."},
        {"role": "user", "content": "Look:"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "Second rule."}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Sure?"},
    ]
    req = request(
        messages=messages,
        params={"max_completion_tokens": 99, "temperature": 1.5, "top_p": 0.9, "stop": "END"},
        response_format={"type": "json_object"},
    )
    await provider().chat(session, platform(sim, base=sim.url + "/v1/"), req)

    sent = sim.requests[-1]
    assert sent["path"] == "/v1/messages"  # a base URL ending in /v1 is not doubled
    body = sent["body"]
    assert body["system"] == "First rule.\n\nSecond rule."
    # JSON mode is a forced tool call, not a prompt instruction
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert body["tools"][-1]["input_schema"] == {"type": "object"}
    assert body["max_tokens"] == 99
    assert body["temperature"] == 1.0
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Sure?"},
    ]


async def test_stream_text_usage_and_openai_chunks(sim, session) -> None:
    sim.script([{"reply": REPLY, "chunks": 4, "cached_tokens": 4, "reasoning_tokens": 3}])
    events = await collect(provider().chat_stream(session, platform(sim), request()))

    assert "".join(e.delta for e in events) == REPLY
    assert sim.requests[-1]["body"]["stream"] is True
    chunks = [orjson.loads(e.openai_chunk) for e in events]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("msg_")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    texts = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "".join(texts) == REPLY
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"

    last = events[-1]
    assert chunks[-1]["choices"] == []
    u = last.usage
    assert (u.input_tokens, u.cached_tokens) == (12, 4)
    assert u.output_tokens == (len(REPLY) + 3) // 4 + 3 and not u.estimated
    assert chunks[-1]["usage"]["prompt_tokens"] == 12


async def test_tools_round_trip(sim, session) -> None:
    req = request(extra={"tools": [WEATHER_TOOL], "tool_choice": "required"})
    result = await provider().chat(session, platform(sim), req)

    body = sim.requests[-1]["body"]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert result.finish_reason == "tool_calls"
    message = result.openai["choices"][0]["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("toolu_")
    # the simulator fills the tool input from its schema (strings hold the reply echo)
    expected = orjson.dumps({"city": "Simulated reply (aigate provider simulator): Say hello"})
    assert call["function"] == {"name": "get_weather", "arguments": expected.decode()}

    # the answer goes back as tool_use / tool_result blocks
    follow_up = request(
        messages=[
            *req.messages,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**call, "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21C"},
        ],
        extra={
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
        },
    )
    await provider().chat(session, platform(sim), follow_up)
    body = sim.requests[-1]["body"]
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny, 21C"},
            ],
        },
    ]


async def test_tool_call_stream(sim, session) -> None:
    req = request(extra={"tools": [WEATHER_TOOL], "tool_choice": "required"})
    sim.script([{"chunks": 2}])
    events = await collect(provider().chat_stream(session, platform(sim), req))
    deltas = [orjson.loads(e.openai_chunk)["choices"] for e in events]
    calls = [c[0]["delta"]["tool_calls"][0] for c in deltas if c and "tool_calls" in c[0]["delta"]]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[0]["id"].startswith("toolu_") and calls[0]["type"] == "function"
    assert all(c["index"] == 0 for c in calls)
    arguments = orjson.loads("".join(c["function"]["arguments"] for c in calls))
    assert arguments == {"city": "Simulated reply (aigate provider simulator): Say hello"}
    assert [e.finish_reason for e in events if e.finish_reason] == ["tool_calls"]


async def test_usage_missing_is_estimated(sim, session) -> None:
    sim.script([{"reply": REPLY, "usage": False}, {"reply": REPLY, "usage": False}])
    result = await provider().chat(session, platform(sim), request())
    assert result.usage.estimated
    assert result.usage.output_tokens == (len(REPLY) + 3) // 4
    events = await collect(provider().chat_stream(session, platform(sim), request()))
    assert events[-1].usage.estimated
    assert events[-1].usage.input_tokens == result.usage.input_tokens


@pytest.mark.parametrize(("status", "retryable"), [(529, True), (429, True), (400, False)])
async def test_error_statuses(sim, session, status: int, retryable: bool) -> None:
    sim.script([{"status": status}])
    with pytest.raises(UpstreamError) as err:
        await provider().chat(session, platform(sim), request())
    assert (err.value.status, err.value.retryable) == (status, retryable)
    assert err.value.message == f"Simulated HTTP {status} error (aigate provider simulator)."


async def test_in_stream_error_event(sim, session) -> None:
    sim.script([{"error_after": 2}])
    events = []
    with pytest.raises(UpstreamError) as err:
        async for event in provider().chat_stream(session, platform(sim), request()):
            events.append(event)
    assert (err.value.status, err.value.retryable) == (529, True)
    assert "Simulated HTTP 529" in err.value.message
    assert len([e for e in events if e.delta]) == 2


async def test_malformed_frame_and_disconnect(sim, session) -> None:
    sim.script([{"malformed": True}, {"disconnect_after": 2}, {"malformed": True}])
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await collect(provider().chat_stream(session, platform(sim), request()))
        assert (err.value.kind, err.value.retryable) == ("protocol", True)
    with pytest.raises(UpstreamError) as err:
        await provider().chat(session, platform(sim), request())
    assert err.value.kind == "protocol"


async def test_first_byte_timeout(sim, session) -> None:
    p = platform(sim, timeouts=Timeouts(connect_s=1, first_byte_s=0.1, total_s=5))
    sim.script([{"latency_ms": 1000}, {"ttft_ms": 1000}])
    with pytest.raises(UpstreamTimeout):
        await provider().chat(session, p, request())
    with pytest.raises(UpstreamTimeout):
        await collect(provider().chat_stream(session, p, request()))


def test_anthropic_version_override_and_usage_arithmetic() -> None:
    p = Platform(
        id="a",
        number=1,
        type="anthropic",
        base_url="https://api.anthropic.com",
        options={"anthropic_version": "2024-01-01", "headers": {"anthropic-beta": "x"}},
    )
    url, headers = anthropic.endpoint(p)
    assert url == "https://api.anthropic.com/v1/messages"
    assert headers["anthropic-version"] == "2024-01-01" and headers["anthropic-beta"] == "x"
    assert "x-api-key" not in headers
    u = anthropic.parse_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        }
    )
    assert (u.input_tokens, u.cached_tokens, u.cache_creation_tokens) == (130, 100, 20)


async def test_stream_without_openai_chunks_keeps_text_and_usage(sim, session) -> None:
    """The App API stream reads no OpenAI chunks: none are built, the rest is unchanged."""
    sim.script([{"reply": REPLY, "chunks": 4, "cached_tokens": 4}])
    events = await collect(provider().chat_stream(session, platform(sim), request(openai_chunks=False)))

    assert all(e.openai_chunk is None for e in events)
    assert "".join(e.delta for e in events) == REPLY
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    u = events[-1].usage
    assert (u.input_tokens, u.cached_tokens) == (12, 4) and not u.estimated
