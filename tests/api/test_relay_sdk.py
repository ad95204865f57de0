"""The official ``openai`` SDK, sync and async, against the relay on every upstream format."""

from __future__ import annotations

import asyncio
import base64

import openai
import orjson
import pytest
from sqlalchemy import select

from aigate.store import tables as t
from tests.api.test_relay import LIMITED_KEY, RPM_KEY, one_window, relay_config
from tests.gateway import APP_ID, RELAY_KEY, start_gateway

MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]
HI = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def rgw(db_url, simulator):
    gateway = await start_gateway(relay_config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


def clients(gw, key: str = RELAY_KEY, **kw) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    base = gw.url + "/v1"
    return (openai.OpenAI(base_url=base, api_key=key, **kw), openai.AsyncOpenAI(base_url=base, api_key=key, **kw))


async def log_rows(gw, *where):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).where(*where).order_by(t.usage_logs.c.id))).all()


async def test_chat_sync_and_async_stream_and_not(rgw):
    sync, aio = clients(rgw)
    for model in MODELS:
        answer = await asyncio.to_thread(sync.chat.completions.create, model=model, messages=HI, user="alice")
        assert "Simulated" in answer.choices[0].message.content and answer.usage.total_tokens > 0

        def stream_sync(model=model):
            return [c for c in sync.chat.completions.create(model=model, messages=HI, stream=True)]

        chunks = await asyncio.to_thread(stream_sync)
        assert "Simulated" in "".join(c.choices[0].delta.content or "" for c in chunks)
        assert all(c.usage is None for c in chunks)  # include_usage not asked: no usage chunk

        answer = await aio.chat.completions.create(model=model, messages=HI, max_tokens=50, temperature=0.5)
        assert answer.choices[0].finish_reason == "stop" and answer.object == "chat.completion"

        stream = await aio.chat.completions.create(
            model=model, messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0
        assert chunks[-1].usage.completion_tokens > 0
    sync.close()
    await aio.close()

    rows = await log_rows(rgw)
    assert len(rows) == 12 and {r.code for r in rows} == {200}
    assert [r.model for r in rows] == [m for m in MODELS for _ in range(4)]
    assert [r.user for r in rows[:4]] == ["alice", "", "", ""]
    for row in rows:
        assert (row.app_id, row.token_name, row.endpoint, row.mode) == (APP_ID, "sdk", "/v1/chat/completions", 1)
        assert row.token_id > 0 and row.input_tokens > 0 and row.output_tokens > 0
        assert row.price["input_price"] > 0 and row.used_amount > 0
        assert not row.usage_estimated
        assert (
            row.metadata["platform"]
            == {"gpt-4o-mini": "sim-openai", "claude-3-5-haiku": "sim-anthropic", "gemini-2.0-flash": "sim-gemini"}[
                row.model
            ]
        )


async def test_embeddings_images_and_models(rgw, simulator):
    sync, aio = clients(rgw)
    floats = await asyncio.to_thread(
        sync.embeddings.create, model="text-embedding-3-small", input=["one", "two"], encoding_format="float"
    )
    assert len(floats.data) == 2 and len(floats.data[0].embedding) == 8 and floats.usage.prompt_tokens > 0
    packed = await aio.embeddings.create(model="text-embedding-3-small", input="one")  # SDK asks base64
    assert simulator.requests[-1]["body"]["encoding_format"] == "base64"
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding)

    image = await asyncio.to_thread(sync.images.generate, model="dall-e-3", prompt="a cat", n=2)
    assert len(image.data) == 2 and image.data[0].url.startswith("https://")
    image = await aio.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert base64.b64decode(image.data[0].b64_json).startswith(b"\x89PNG")

    ids = [m.id for m in await asyncio.to_thread(lambda: list(sync.models.list()))]
    assert {"gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "text-embedding-3-small", "dall-e-3"} <= set(ids)
    assert (await aio.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
    limited = openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=LIMITED_KEY)
    assert [m.id async for m in limited.models.list()] == ["gpt-4o-mini"]
    sync.close()
    await aio.close()
    await limited.close()

    rows = await log_rows(rgw)
    assert [(r.endpoint, r.mode, r.code) for r in rows] == [
        ("/v1/embeddings", 2, 200),
        ("/v1/embeddings", 2, 200),
        ("/v1/images/generations", 3, 200),
        ("/v1/images/generations", 3, 200),
    ]
    assert all(r.token_name == "sdk" and r.used_amount > 0 for r in rows)
    assert rows[0].input_tokens > 0 and rows[2].price["per_request_price"] == 0.04


async def test_tools_round_trip_and_json_mode(rgw, simulator):
    _, aio = clients(rgw)
    for model in MODELS:
        answer = await aio.chat.completions.create(model=model, messages=HI, tools=[WEATHER], tool_choice="required")
        [call] = answer.choices[0].message.tool_calls
        assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"
        orjson.loads(call.function.arguments)

        stream = await aio.chat.completions.create(
            model=model, messages=HI, tools=[WEATHER], tool_choice="required", stream=True
        )
        deltas = [tc for c in [c async for c in stream] if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert deltas[0].function.name == "get_weather"
        orjson.loads("".join(d.function.arguments or "" for d in deltas))

        history = [
            *HI,
            answer.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]
        final = await aio.chat.completions.create(model=model, messages=history, tools=[WEATHER])
        assert final.choices[0].message.content

        answer = await aio.chat.completions.create(model=model, messages=HI, response_format={"type": "json_object"})
        if model == "claude-3-5-haiku":  # Anthropic: JSON mode is a forced tool call
            assert simulator.requests[-1]["body"]["tool_choice"]["name"] == "json_response"
        assert isinstance(orjson.loads(answer.choices[0].message.content), dict)
    await aio.close()
    rows = await log_rows(rgw)
    assert len(rows) == 12 and all(r.code == 200 and r.output_tokens > 0 for r in rows)


async def test_errors_raise_the_sdk_exception_classes(rgw, simulator, monkeypatch):
    sync, aio = clients(rgw, max_retries=0)
    simulator.script([{"status": 429}] * 3)  # every attempt is rate limited upstream
    with pytest.raises(openai.RateLimitError):
        await aio.chat.completions.create(model="gpt-4o-mini", messages=HI)
    simulator.script([{"status": 500}] * 3)
    with pytest.raises(openai.InternalServerError):
        await asyncio.to_thread(sync.chat.completions.create, model="gpt-4o-mini", messages=HI)
    with pytest.raises(openai.NotFoundError) as exc:
        await aio.chat.completions.create(model="no-such-model", messages=HI)
    assert exc.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as exc:
        await aio.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert exc.value.param == "messages"
    broken = [{"role": "user", "content": "[[sim error_after=1]]"}]
    with pytest.raises(openai.APIError):  # an error in the middle of a stream
        async for _ in await aio.chat.completions.create(model="gemini-2.0-flash", messages=broken, stream=True):
            pass

    bad_sync, bad_aio = clients(rgw, key="sk-not-a-real-key-0123", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        await bad_aio.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert exc.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await asyncio.to_thread(lambda: list(bad_sync.models.list()))

    _, limited = clients(rgw, key=LIMITED_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        await limited.chat.completions.create(model="claude-3-5-haiku", messages=HI)
    assert exc.value.code == "model_not_found"

    _, rpm3 = clients(rgw, key=RPM_KEY, max_retries=0)
    one_window(monkeypatch)
    for _ in range(3):
        await rpm3.chat.completions.create(model="gpt-4o-mini", messages=HI)
    with pytest.raises(openai.RateLimitError) as exc:
        await rpm3.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert exc.value.code == "rate_limit_exceeded"
    for client in (sync, bad_sync):
        client.close()
    for client in (aio, bad_aio, limited, rpm3):
        await client.close()

    rows = await log_rows(rgw)  # every call with a valid token, none with the bad key
    assert [(r.token_name, r.code) for r in rows] == [
        ("sdk", 429),
        ("sdk", 502),
        ("sdk", 404),
        ("sdk", 400),
        ("sdk", 502),
        ("limited", 403),
        ("rpm3", 200),
        ("rpm3", 200),
        ("rpm3", 200),
        ("rpm3", 429),
    ]
    assert rows[0].retry_times == 2 and rows[0].content
