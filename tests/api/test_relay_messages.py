"""The Anthropic Messages API through the relay with the official anthropic SDK, unchanged,
against each platform type: passed through to Anthropic, translated for the others.
Messages and stream events parse strictly with the SDK's own types; errors raise the
SDK's error classes."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from sqlalchemy import select

from aigate.simulator.text import REPLY_PREFIX
from aigate.store import tables as t
from tests.api.test_relay import RPM_KEY, one_window
from tests.api.test_relay_responses import config
from tests.gateway import RELAY_KEY, start_gateway
from tests.strict import strict_parse

MODELS = ["claude-3-5-haiku", "gpt-4o-mini", "gemini-2.0-flash", "compat-chat"]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGOIWrEBAAK7AcpAlQ1dAAAAAElFTkSuQmCC"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
async def rgw(db_url, simulator):
    gateway = await start_gateway(config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
async def claude(rgw):
    async with anthropic.AsyncAnthropic(base_url=rgw.url, api_key=RELAY_KEY, max_retries=0) as c:
        yield c


def strict(message) -> Message:
    return strict_parse(Message, message.model_dump(mode="json", exclude_unset=True, by_alias=True))


async def log_rows(gw):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).order_by(t.usage_logs.c.id))).all()


@pytest.mark.parametrize("model", MODELS)
async def test_create_with_system_and_image(rgw, claude, simulator, model):
    raw = await claude.messages.with_raw_response.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    message = strict(await raw.parse())
    assert message.content[0].text == f"{REPLY_PREFIX} What is this?"
    assert message.stop_reason == "end_turn" and message.model
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = json.dumps(simulator.requests[-1]["body"])
    assert PNG in sent and "Be brief." in sent  # the image and system reach every format
    [row] = await log_rows(rgw)
    assert (row.code, row.model, row.request_id) == (200, model, raw.headers["request-id"])
    assert row.endpoint == "/v1/messages" and row.output_tokens == message.usage.output_tokens


@pytest.mark.parametrize("model", MODELS)
async def test_stream_events_and_final_message(rgw, claude, model):
    kinds, text = [], []
    stream = await claude.messages.create(
        model=model, max_tokens=100, stream=True, messages=[{"role": "user", "content": "Tell a story"}]
    )
    async for event in stream:
        strict_parse(RawMessageStreamEvent, event.model_dump(mode="json", exclude_unset=True, by_alias=True))
        kinds.append(event.type)
        if event.type == "content_block_delta":
            text.append(event.delta.text)
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "".join(text) == f"{REPLY_PREFIX} Tell a story"
    async with claude.messages.stream(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Again"}]
    ) as s:
        final = await s.get_final_message()
    strict(final)
    assert final.content[0].text == f"{REPLY_PREFIX} Again" and final.usage.output_tokens > 0
    rows = await log_rows(rgw)
    assert [r.code for r in rows] == [200, 200] and all(r.output_tokens > 0 for r in rows)


@pytest.mark.parametrize("model", MODELS)
async def test_tools_round_trip(claude, simulator, model):
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = strict(
        await claude.messages.create(
            model=model,
            max_tokens=100,
            messages=question,
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather"},
        )
    )
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and use.name == "get_weather" and "city" in use.input
    async with claude.messages.stream(
        model=model,
        max_tokens=100,
        messages=question,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as s:
        streamed = await s.get_final_message()
    assert streamed.content[-1].type == "tool_use" and streamed.content[-1].input == use.input
    final = strict(
        await claude.messages.create(
            model=model,
            max_tokens=100,
            tools=[WEATHER],
            messages=[
                *question,
                {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"},
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
        )
    )
    assert final.content[0].text.startswith(REPLY_PREFIX) and final.stop_reason == "end_turn"
    sent = json.dumps(simulator.requests[-1]["body"])
    assert "sunny" in sent and "get_weather" in sent


@pytest.mark.parametrize("model", MODELS)
async def test_count_tokens(rgw, claude, simulator, model):
    counted = await claude.messages.count_tokens(
        model=model, system="Be brief.", messages=[{"role": "user", "content": "Hello there"}]
    )
    strict_parse(MessageTokensCount, counted.model_dump(mode="json", exclude_unset=True))
    assert counted.input_tokens > 0
    if model == "claude-3-5-haiku":  # asked upstream
        assert simulator.requests[-1]["path"] == "/v1/messages/count_tokens"
    [row] = await log_rows(rgw)
    assert row.code == 200 and row.endpoint == "/v1/messages/count_tokens"


async def test_bearer_auth_and_error_classes(rgw, simulator, monkeypatch):
    hi = [{"role": "user", "content": "hi"}]
    async with anthropic.AsyncAnthropic(base_url=rgw.url, auth_token=RELAY_KEY, max_retries=0) as bearer:
        assert (await bearer.messages.create(model="gpt-4o-mini", max_tokens=10, messages=hi)).content
    async with anthropic.AsyncAnthropic(base_url=rgw.url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.messages.create(model="gpt-4o-mini", max_tokens=10, messages=hi)
    assert caught.value.body["error"]["type"] == "authentication_error"
    async with anthropic.AsyncAnthropic(base_url=rgw.url, api_key=RELAY_KEY, max_retries=0) as claude:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await claude.messages.create(model="no-such-model", max_tokens=10, messages=hi)
        assert caught.value.body == {
            "type": "error",
            "error": {"type": "not_found_error", "message": caught.value.body["error"]["message"]},
        }
        with pytest.raises(anthropic.BadRequestError) as caught:
            await claude.messages.create(model="gpt-4o-mini", max_tokens=0, messages=hi)
        assert "max_tokens" in caught.value.message
        with pytest.raises(anthropic.BadRequestError):
            await claude.messages.create(
                model="gpt-4o-mini",
                max_tokens=10,
                messages=hi,
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
            )
        simulator.script([{"status": 500}] * 3)
        with pytest.raises(anthropic.InternalServerError) as caught:
            await claude.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=hi)
        assert caught.value.body["error"]["type"] == "api_error"
    one_window(monkeypatch)
    async with anthropic.AsyncAnthropic(base_url=rgw.url, api_key=RPM_KEY, max_retries=0) as limited:
        for _ in range(3):
            await limited.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=hi)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await limited.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=hi)
        assert caught.value.body["error"]["type"] == "rate_limit_error"
    rows = await log_rows(rgw)
    # the wrong key is not logged row by row; everything with a valid token is
    assert [r.code for r in rows] == [200, 404, 400, 400, 502, 200, 200, 200, 429]


async def test_anthropic_beta_header_reaches_anthropic(rgw, simulator):
    async with anthropic.AsyncAnthropic(
        base_url=rgw.url, api_key=RELAY_KEY, max_retries=0, default_headers={"anthropic-beta": "feature-x"}
    ) as c:
        await c.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    headers = simulator.requests[-1]["headers"]
    assert headers["anthropic-beta"] == "feature-x" and headers["x-api-key"] == "sk-ant-sim"
