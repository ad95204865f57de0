"""The official SDKs pointed at the simulator: Responses API, transcriptions, Anthropic
auth by Bearer and JSON mode, Gemini under /v1. Answers parse strictly with the SDKs'
own types (no unknown field, no missing required field)."""

from __future__ import annotations

import io
import json
import struct

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.audio import Transcription, TranscriptionVerbose
from openai.types.chat import ChatCompletion
from openai.types.responses import Response, ResponseStreamEvent

from aigate.simulator.audio import wav_seconds
from aigate.simulator.text import REPLY_PREFIX, count_tokens
from tests.strict import strict_parse

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
    "$defs": {"Tag": {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}}},
}


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of a 440 Hz square wave."""
    frames = int(seconds * rate)
    period = rate // 440
    samples = b"".join(struct.pack("<h", 8000 if (i // (period // 2)) % 2 else -8000) for i in range(frames))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(samples))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
    )


@pytest.fixture
async def oai(simulator):
    async with openai.AsyncOpenAI(base_url=simulator.url + "/v1", api_key="sk-sim", max_retries=0) as client:
        yield client


@pytest.fixture
async def claude(simulator):
    async with anthropic.AsyncAnthropic(base_url=simulator.url, api_key="sk-ant-sim", max_retries=0) as client:
        yield client


async def test_responses_text(oai, simulator):
    response = await oai.responses.create(
        model="gpt-4o-mini",
        input="Hello responses",
        instructions="Be brief.",
    )
    strict_parse(Response, response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert response.output_text == f"{REPLY_PREFIX} Hello responses"
    assert response.status == "completed"
    prompt = 3 + count_tokens("Hello responses") + 3 + count_tokens("Be brief.")
    assert response.usage.input_tokens == prompt
    assert response.usage.output_tokens == count_tokens(response.output_text)
    assert simulator.requests[-1]["body"]["instructions"] == "Be brief."


async def test_responses_stream_events_are_typed_and_join(oai):
    kinds, deltas, final = [], [], None
    stream = await oai.responses.create(model="gpt-4o-mini", input="Tell a story", stream=True)
    async for event in stream:
        strict_parse(ResponseStreamEvent, event.model_dump(mode="json", exclude_unset=True, by_alias=True))
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(deltas) == final.output_text == f"{REPLY_PREFIX} Tell a story"
    assert final.usage.total_tokens > 0


async def test_responses_forced_function_follows_its_schema(oai):
    response = await oai.responses.create(
        model="gpt-4o-mini",
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
    )
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    args = json.loads(call.arguments)
    assert args == {"city": f"{REPLY_PREFIX} Weather in Paris?", "days": 1}
    # the round trip: the function's output goes back as an input item
    follow = await oai.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert follow.output_text == f"{REPLY_PREFIX} thanks"


async def test_responses_json_schema_format_is_followed(oai):
    response = await oai.responses.create(
        model="gpt-4o-mini",
        input="Who?",
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}},
    )
    data = json.loads(response.output_text)
    assert data == {"name": f"{REPLY_PREFIX} Who?", "age": 1, "tags": [{"label": "a"}]}


async def test_responses_previous_response_id_is_not_stored(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_x")
    assert caught.value.body["param"] == "previous_response_id"


async def test_chat_json_schema_follows_the_schema(oai):
    completion = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Who?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )
    strict_parse(ChatCompletion, completion.model_dump(mode="json", exclude_unset=True, by_alias=True))
    data = json.loads(completion.choices[0].message.content)
    assert set(data) == {"name", "age", "tags"} and data["age"] == 1


@pytest.mark.parametrize("model, usage_type", [("whisper-1", "duration"), ("gpt-4o-mini-transcribe", "tokens")])
async def test_transcription_of_a_generated_wav(oai, simulator, model, usage_type):
    audio = wav(1.5)
    assert wav_seconds(audio) == 1.5
    result = await oai.audio.transcriptions.create(
        model=model,
        file=("hello.wav", io.BytesIO(audio), "audio/wav"),
    )
    strict_parse(Transcription, result.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert result.text == "Simulated transcription (aigate provider simulator) of hello.wav, 1.5 s."
    assert result.usage.type == usage_type
    if usage_type == "tokens":
        assert result.usage.input_tokens == 15
    recorded = simulator.requests[-1]
    assert recorded["headers"]["content-type"].startswith("multipart/form-data")


async def test_transcription_formats(oai):
    audio = ("a.wav", wav(0.5), "audio/wav")
    verbose = await oai.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json")
    strict_parse(TranscriptionVerbose, verbose.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert verbose.duration == 0.5
    plain = await oai.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert plain.startswith("Simulated transcription")
    srt = await oai.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert "00:00:00,000 --> 00:00:00,500" in srt


async def test_transcription_requires_a_file(sim):
    reply = await sim.post(
        "/v1/audio/transcriptions",
        data=b"--x--\r\n",
        headers={"Authorization": "Bearer k", "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "file"


async def test_anthropic_sdk_bearer_auth(simulator):
    async with anthropic.AsyncAnthropic(base_url=simulator.url, auth_token="sk-ant-oauth", max_retries=0) as client:
        message = await client.messages.create(
            model="claude-3-5-haiku", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
        )
    strict_parse(Message, message.model_dump(mode="json", exclude_unset=True, by_alias=True))
    headers = simulator.requests[-1]["headers"]
    assert headers["authorization"] == "Bearer sk-ant-oauth" and "x-api-key" not in headers


async def test_anthropic_forced_tool_input_follows_the_schema(claude):
    tool = {"name": "person", "input_schema": PERSON}
    message = await claude.messages.create(
        model="claude-3-5-haiku",
        max_tokens=100,
        messages=[{"role": "user", "content": "Who?"}],
        tools=[tool],
        tool_choice={"type": "tool", "name": "person"},
    )
    strict_parse(Message, message.model_dump(mode="json", exclude_unset=True, by_alias=True))
    [block] = message.content
    assert block.type == "tool_use" and message.stop_reason == "tool_use"
    assert block.input == {"name": f"{REPLY_PREFIX} Who?", "age": 1, "tags": [{"label": "a"}]}
    # streamed: raw events parse strictly; input_json_delta pieces join to the same input
    kwargs = dict(
        model="claude-3-5-haiku",
        max_tokens=100,
        tools=[tool],
        messages=[{"role": "user", "content": "Who?"}],
        tool_choice={"type": "tool", "name": "person"},
    )
    pieces = []
    async for event in await claude.messages.create(stream=True, **kwargs):
        strict_parse(RawMessageStreamEvent, event.model_dump(mode="json", exclude_unset=True, by_alias=True))
        if event.type == "content_block_delta":
            pieces.append(event.delta.partial_json)
    assert json.loads("".join(pieces)) == block.input
    async with claude.messages.stream(**kwargs) as stream:
        final = await stream.get_final_message()
    assert final.content[0].input == block.input


async def test_gemini_v1_and_v1beta_answer_alike(sim):
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello Gemini"}]}]}
    headers = {"x-goog-api-key": "g-key"}
    beta = await sim.post("/v1beta/models/gemini-2.0-flash:generateContent", body, headers=headers)
    stable = await sim.post("/v1/models/gemini-2.0-flash:generateContent", body, headers=headers)
    assert beta.status == stable.status == 200
    text_of = lambda r: r.json()["candidates"][0]["content"]["parts"][0]["text"]  # noqa: E731
    assert text_of(beta) == text_of(stable) == f"{REPLY_PREFIX} Hello Gemini"
    counted = await sim.post("/v1/models/gemini-2.0-flash:countTokens", body, headers=headers)
    assert counted.json()["totalTokens"] == 3 + count_tokens("Hello Gemini")


async def test_gemini_response_json_schema_is_followed(sim):
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Who?"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": PERSON},
    }
    reply = await sim.post("/v1/models/gemini-2.0-flash:generateContent", body, headers={"x-goog-api-key": "g"})
    data = json.loads(reply.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert data["tags"] == [{"label": "a"}]
