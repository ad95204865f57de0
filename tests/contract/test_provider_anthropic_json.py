"""JSON-schema output on Anthropic platforms by a forced tool call, against the simulator."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from aigate.providers.base import ChatRequest, Platform, Timeouts, UpstreamError
from aigate.providers.registry import chat_provider
from aigate.simulator.server import start_simulator
from aigate.simulator.text import REPLY_PREFIX

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
EXPECTED = {"city": f"{REPLY_PREFIX} Biggest city?", "population": 1}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
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


def platform(sim) -> Platform:
    return Platform(
        id="claude",
        number=3,
        type="anthropic",
        base_url=sim.url,
        api_key="k",
        timeouts=Timeouts(connect_s=1, first_byte_s=2, total_s=5),
    )


def request(**kw) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Biggest city?"}])
    return ChatRequest(model="claude-3-5-haiku", **kw)


async def test_json_schema_answer_is_the_forced_tool_input(sim, session):
    result = await chat_provider("anthropic").chat(session, platform(sim), request(response_format=JSON_SCHEMA))
    sent = sim.requests[-1]["body"]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert sent["tools"] == [
        {"name": "json_response", "input_schema": SCHEMA, "description": sent["tools"][0]["description"]}
    ]
    assert orjson.loads(result.content) == EXPECTED
    assert result.finish_reason == "stop"
    message = result.openai["choices"][0]["message"]
    assert orjson.loads(message["content"]) == EXPECTED and "tool_calls" not in message
    assert result.openai["choices"][0]["finish_reason"] == "stop"


async def test_json_schema_stream_sends_the_input_as_content(sim, session):
    sim.script([{"chunks": 4}])
    events = [
        e
        async for e in chat_provider("anthropic").chat_stream(
            session, platform(sim), request(response_format=JSON_SCHEMA)
        )
    ]
    deltas = [e.delta for e in events if e.delta]
    assert len(deltas) == 4 and orjson.loads("".join(deltas)) == EXPECTED
    chunks = [orjson.loads(e.openai_chunk) for e in events if e.openai_chunk]
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks if c["choices"])
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]


async def test_with_the_callers_tools_the_model_may_pick_theirs(sim, session):
    await chat_provider("anthropic").chat(
        session, platform(sim), request(response_format=JSON_SCHEMA, extra={"tools": [WEATHER]})
    )
    sent = sim.requests[-1]["body"]
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "json_response"]
    assert sent["tool_choice"] == {"type": "any"}


async def test_json_schema_with_thinking_is_refused_before_any_call(sim, session):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with pytest.raises(UpstreamError) as caught:
        await chat_provider("anthropic").chat(
            session, platform(sim), request(response_format=JSON_SCHEMA, extra={"thinking": thinking})
        )
    assert caught.value.status == 400 and not caught.value.retryable
    assert "response_format" in caught.value.message
    assert orjson.loads(caught.value.body)["error"]["param"] == "response_format"
    assert sim.requests == []


async def test_json_object_with_thinking_asks_in_the_prompt(sim, session):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    await chat_provider("anthropic").chat(
        session, platform(sim), request(response_format={"type": "json_object"}, extra={"thinking": thinking})
    )
    sent = sim.requests[-1]["body"]
    assert sent["thinking"] == thinking
    assert "tool_choice" not in sent and "JSON object" in sent["system"]
