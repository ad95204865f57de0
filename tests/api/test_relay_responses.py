"""The Responses API through the relay with the official openai SDK, unchanged, against
OpenAI- (native), Anthropic- and Gemini-format platforms and an OpenAI-compatible one
(translated). Every answer and stream event parses strictly with the SDK's own types."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from sqlalchemy import select

from aigate.simulator.text import REPLY_PREFIX
from aigate.store import tables as t
from tests.api.test_relay import RPM_KEY, one_window, relay_config
from tests.gateway import RELAY_KEY, start_gateway
from tests.strict import strict_parse

MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "compat-chat"]
UPSTREAM_PATH = {
    "gpt-4o-mini": "/v1/responses",
    "claude-3-5-haiku": "/v1/messages",
    "gemini-2.0-flash": "/v1beta/models/gemini-2.0-flash:generateContent",
    "compat-chat": "/v1/chat/completions",
}
OTHER_APP_KEY = "sk-other-app-relay-0123456789"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "rank": {"type": "integer"}},
    "required": ["city", "rank"],
    "additionalProperties": False,
}


def config(db_url, sim_url):
    doc = relay_config(db_url, sim_url)
    doc["models"].append({"name": "compat-chat", "price": {"input_price": 1, "output_price": 1}})
    doc["platforms"].append(
        {
            "id": "sim-compat",
            "type": "openai_compatible",
            "base_url": f"{sim_url}/v1",
            "api_key": "sk-sim",
            "models": ["compat-chat"],
        }
    )
    other = {
        **doc["apps"][0],
        "id": "APPOTHER",
        "name": "Other",
        "server_keys": [],
        "strategies": [],
        "relay_tokens": [{"name": "other", "key": OTHER_APP_KEY}],
    }
    doc["apps"].append(other)
    return doc


@pytest.fixture
async def rgw(db_url, simulator):
    gateway = await start_gateway(config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
async def client(rgw):
    async with openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=RELAY_KEY, max_retries=0) as c:
        yield c


def strict(response) -> Response:
    return strict_parse(Response, response.model_dump(mode="json", exclude_unset=True, by_alias=True))


async def log_rows(gw):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).order_by(t.usage_logs.c.id))).all()


@pytest.mark.parametrize("model", MODELS)
async def test_text_stored_retrieved_and_logged(rgw, client, simulator, model):
    raw = await client.responses.with_raw_response.create(
        model=model, input="Hello responses", instructions="Be brief.", store=True
    )
    response = strict(raw.parse())
    assert response.output_text == f"{REPLY_PREFIX} Hello responses"
    assert response.id.startswith("resp_") and len(response.id) == 53
    assert response.status == "completed" and response.usage.total_tokens > 0
    upstream = simulator.requests[-1]
    assert upstream["path"] == UPSTREAM_PATH[model]
    if model == "gpt-4o-mini":  # native: the upstream stores nothing, aigate does
        assert upstream["body"]["store"] is False and "previous_response_id" not in upstream["body"]
        assert upstream["body"]["instructions"] == "Be brief."
    fetched = strict(await client.responses.retrieve(response.id))
    assert fetched.output_text == response.output_text and fetched.id == response.id
    [row] = await log_rows(rgw)
    assert (row.code, row.model, row.request_id) == (200, model, raw.headers["x-request-id"])
    assert row.input_tokens == response.usage.input_tokens > 0
    assert row.output_tokens == response.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
async def test_stream_typed_events(rgw, client, model):
    kinds, deltas, numbers, final = [], [], [], None
    stream = await client.responses.create(model=model, input="Tell a story", stream=True)
    async for event in stream:
        strict_parse(ResponseStreamEvent, event.model_dump(mode="json", exclude_unset=True, by_alias=True))
        kinds.append(event.type)
        numbers.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.done" in kinds
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert "".join(deltas) == final.output_text == f"{REPLY_PREFIX} Tell a story"
    assert final.id.startswith("resp_") and len(final.id) == 53
    stored = await client.responses.retrieve(final.id)  # stored before the last event
    assert stored.output_text == final.output_text
    [row] = await log_rows(rgw)
    assert row.code == 200 and row.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
async def test_tools_round_trip_with_previous_response_id(client, simulator, model):
    first = strict(
        await client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    second = strict(
        await client.responses.create(
            model=model,
            previous_response_id=first.id,
            tools=[WEATHER],
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
                {"role": "user", "content": "and tomorrow?"},
            ],
        )
    )
    assert second.output_text.endswith("and tomorrow?")  # Anthropic merges the tool result in
    assert second.previous_response_id == first.id
    sent = json.dumps(simulator.requests[-1]["body"])
    assert "Weather in Paris?" in sent and "sunny" in sent and "get_weather" in sent
    if model != "gemini-2.0-flash":  # Gemini's wire format has no call ids
        assert call.call_id in sent


@pytest.mark.parametrize("model", MODELS)
async def test_text_format_json_schema(client, model):
    response = strict(
        await client.responses.create(
            model=model,
            input="Best city?",
            text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
        )
    )
    assert json.loads(response.output_text) == {"city": f"{REPLY_PREFIX} Best city?", "rank": 1}


async def test_thread_continues_on_another_platform(client, simulator):
    """The thread lives in aigate: a follow-up on a platform of another format sees it."""
    first = await client.responses.create(model="gpt-4o-mini", input="My name is Ada.")
    second = await client.responses.create(
        model="claude-3-5-haiku", input="What is my name?", previous_response_id=first.id
    )
    sent = simulator.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "My name is Ada." in json.dumps(sent[0]) and first.output_text in json.dumps(sent[1])
    third = await client.responses.create(model="gemini-2.0-flash", input="And again?", previous_response_id=second.id)
    contents = simulator.requests[-1]["body"]["contents"]
    assert len(contents) == 5 and third.output_text.endswith("And again?")


async def test_scoped_to_the_app_deleted_and_not_stored(rgw, client):
    response = await client.responses.create(model="gpt-4o-mini", input="secret")
    async with openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=OTHER_APP_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError) as caught:
            await other.responses.create(model="gpt-4o-mini", input="x", previous_response_id=response.id)
        assert caught.value.body["param"] == "previous_response_id"
    await client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    unsaved = await client.responses.create(model="claude-3-5-haiku", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unsaved.id)


async def test_refusals_are_openai_errors_and_logged(rgw, client, monkeypatch):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="claude-3-5-haiku", input="x", tools=[{"type": "web_search"}])
    assert caught.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o-mini", input=42)
    assert caught.value.body["param"] == "input"
    one_window(monkeypatch)
    async with openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=RPM_KEY, max_retries=0) as limited:
        for _ in range(3):
            await limited.responses.create(model="gpt-4o-mini", input="x")
        with pytest.raises(openai.RateLimitError):
            await limited.responses.create(model="gpt-4o-mini", input="x")
    rows = await log_rows(rgw)
    assert [r.code for r in rows] == [400, 400, 200, 200, 200, 429]
    assert all(r.endpoint == "/v1/responses" for r in rows)


async def test_native_follow_up_sends_stateless_items(client, simulator):
    """With store: false upstream, stored output goes back without item ids to look up."""
    first = await client.responses.create(model="gpt-4o-mini", input="Hi", tools=[WEATHER], tool_choice="required")
    [call] = first.output
    await client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    sent = simulator.requests[-1]["body"]["input"]
    assert sent == [
        {"type": "message", "role": "user", "content": "Hi"},
        {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    text = await client.responses.create(model="gpt-4o-mini", input="Hello")
    await client.responses.create(model="gpt-4o-mini", input="More", previous_response_id=text.id)
    assert simulator.requests[-1]["body"]["input"][1] == {"role": "assistant", "content": text.output_text}
