"""Chat completions and their chunks, from every upstream format, parse strictly with the
openai SDK's own types: no unknown field, no missing required one (``refusal`` included)."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.api.test_relay_responses import config
from tests.gateway import RELAY_KEY, start_gateway
from tests.strict import strict_parse

MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "compat-chat"]
HI = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def client(db_url, simulator):
    gateway = await start_gateway(config(db_url, simulator.url))
    try:
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=RELAY_KEY, max_retries=0) as c:
            yield c
    finally:
        await gateway.close()


def dump(value) -> dict:
    return value.model_dump(mode="json", exclude_unset=True, by_alias=True)


@pytest.mark.parametrize("model", MODELS)
async def test_completions_and_chunks_are_strict(client, model):
    for extra in ({}, {"tools": [WEATHER], "tool_choice": "required"}):
        completion = await client.chat.completions.create(model=model, messages=HI, **extra)
        strict_parse(ChatCompletion, dump(completion))
        assert completion.choices[0].message.refusal is None
        assert "refusal" in dump(completion)["choices"][0]["message"]  # present, not defaulted
        stream = await client.chat.completions.create(
            model=model, messages=HI, stream=True, stream_options={"include_usage": True}, **extra
        )
        chunks = [chunk async for chunk in stream]
        for chunk in chunks:
            strict_parse(ChatCompletionChunk, dump(chunk))
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
