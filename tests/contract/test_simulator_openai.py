"""The simulator's OpenAI and Azure OpenAI wire formats, over real HTTP."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from aigate.simulator.server import start_simulator
from aigate.simulator.text import REPLY_PREFIX, count_tokens

AUTH = {"Authorization": "Bearer sk-test"}
AZURE_AUTH = {"api-key": "azure-key"}
AZURE_CHAT = "/openai/deployments/my-gpt/chat/completions"
QUESTION = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"


def chat_body(content: str = "Hello simulator", **extra: object) -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": content},
        ],
        **extra,
    }


def expected_prompt_tokens(*texts: str) -> int:
    return sum(3 + count_tokens(t) for t in texts)


def content_deltas(frames: list) -> list[str]:
    pieces = []
    for frame in frames:
        if frame.data == "[DONE]":
            continue
        choices = frame.json()["choices"]
        if choices and "content" in choices[0]["delta"] and "role" not in choices[0]["delta"]:
            pieces.append(choices[0]["delta"]["content"])
    return pieces


async def test_chat_completion_shape_and_usage(sim):
    reply = await sim.post("/v1/chat/completions", chat_body(QUESTION), headers=AUTH)
    assert reply.status == 200
    assert reply.headers["x-simulator"] == "aigate"
    data = reply.json()
    assert data["id"].startswith("chatcmpl-sim")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o-mini"
    assert data["system_fingerprint"] == "aigate-simulator"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content == f"{REPLY_PREFIX} {' '.join(QUESTION.split()[:12])}"
    usage = data["usage"]
    assert usage["prompt_tokens"] == expected_prompt_tokens("Be brief.", QUESTION)
    assert usage["completion_tokens"] == count_tokens(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


async def test_content_parts_are_read(sim):
    body = chat_body()
    body["messages"][1]["content"] = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this picture"},
    ]
    data = (await sim.post("/v1/chat/completions", body, headers=AUTH)).json()
    assert data["choices"][0]["message"]["content"].endswith("look at this picture")
    assert data["usage"]["prompt_tokens"] == 3 + count_tokens("Be brief.") + 3 + count_tokens("look at") + count_tokens(
        "this picture"
    )


async def test_stream_deltas_join_to_the_non_stream_reply(sim):
    plain = (await sim.post("/v1/chat/completions", chat_body(QUESTION), headers=AUTH)).json()
    reply = await sim.post("/v1/chat/completions", chat_body(QUESTION, stream=True), headers=AUTH)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    frames = reply.frames()
    assert frames[-1].data == "[DONE]"
    chunks = [f.json() for f in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # no include_usage: no usage at all
    pieces = content_deltas(frames)
    assert len(pieces) == 8
    assert "".join(pieces) == plain["choices"][0]["message"]["content"]


async def test_stream_include_usage_adds_a_final_usage_chunk(sim):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    frames = (await sim.post("/v1/chat/completions", body, headers=AUTH)).frames()
    assert frames[-1].data == "[DONE]"
    last = frames[-2].json()
    assert last["choices"] == []
    text = "".join(content_deltas(frames))
    assert last["usage"]["completion_tokens"] == count_tokens(text)
    assert last["usage"]["prompt_tokens"] == expected_prompt_tokens("Be brief.", "Hello simulator")
    assert frames[-3].json()["choices"][0]["finish_reason"] == "stop"
    assert all(f.json()["usage"] is None for f in frames[:-2])


async def test_chunks_switch_sets_the_number_of_deltas(sim):
    frames = (
        await sim.post("/v1/chat/completions", chat_body(stream=True), headers={**AUTH, "x-sim-chunks": "3"})
    ).frames()
    assert len(content_deltas(frames)) == 3


async def test_json_mode_returns_a_json_object_string(sim):
    body = chat_body(response_format={"type": "json_object"})
    content = (await sim.post("/v1/chat/completions", body, headers=AUTH)).json()["choices"][0]["message"]["content"]
    parsed = orjson.loads(content)
    assert parsed["simulated"] is True
    assert parsed["reply"].startswith(REPLY_PREFIX)
    streamed = await sim.post("/v1/chat/completions", {**body, "stream": True}, headers=AUTH)
    assert "".join(content_deltas(streamed.frames())) == content


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


@pytest.mark.parametrize(
    ("tool_choice", "name"),
    [("required", "get_weather"), ({"type": "function", "function": {"name": "get_time"}}, "get_time")],
)
async def test_forced_tool_call(sim, tool_choice, name):
    body = chat_body(tools=TOOLS, tool_choice=tool_choice)
    data = (await sim.post("/v1/chat/completions", body, headers=AUTH)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": name, "arguments": "{}"}
    assert data["usage"]["completion_tokens"] == count_tokens(name + "{}")


async def test_auto_tool_choice_answers_with_text(sim):
    body = chat_body(tools=TOOLS, tool_choice="auto")
    data = (await sim.post("/v1/chat/completions", body, headers=AUTH)).json()
    assert data["choices"][0]["message"]["content"].startswith(REPLY_PREFIX)


async def test_streamed_tool_call(sim):
    body = chat_body(tools=TOOLS, tool_choice="required", stream=True)
    frames = (await sim.post("/v1/chat/completions", body, headers=AUTH)).frames()
    chunks = [f.json() for f in frames[:-1]]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert first["tool_calls"][0]["id"].startswith("call_")
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1])
    assert arguments == "{}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-1].data == "[DONE]"


async def test_embeddings_are_deterministic(sim):
    one = (await sim.post("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}, headers=AUTH)).json()
    assert one["object"] == "list"
    assert one["model"] == "text-embedding-3-small"
    vector = one["data"][0]["embedding"]
    assert len(vector) == 8
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-9
    many = (
        await sim.post("/v1/embeddings", {"model": "m", "input": ["hello", "world"], "dimensions": 16}, headers=AUTH)
    ).json()
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 16 for d in many["data"])
    assert many["data"][0]["embedding"] != many["data"][1]["embedding"]
    again = (await sim.post("/v1/embeddings", {"model": "m", "input": ["hello"]}, headers=AUTH)).json()
    assert again["data"][0]["embedding"] == vector
    tokens = count_tokens("hello") + count_tokens("world")
    assert many["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


async def test_embeddings_base64_encoding(sim):
    plain = (await sim.post("/v1/embeddings", {"model": "m", "input": "abc"}, headers=AUTH)).json()
    encoded = (
        await sim.post("/v1/embeddings", {"model": "m", "input": "abc", "encoding_format": "base64"}, headers=AUTH)
    ).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    floats = struct.unpack("<8f", raw)
    assert floats == pytest.approx(plain["data"][0]["embedding"], abs=1e-6)


async def test_image_generation_url_and_b64(sim):
    urls = (
        await sim.post(
            "/v1/images/generations",
            {"model": "dall-e-3", "prompt": "a cat", "n": 2, "size": "1024x1024"},
            headers=AUTH,
        )
    ).json()
    assert isinstance(urls["created"], int)
    assert len(urls["data"]) == 2
    for item in urls["data"]:
        assert item["url"].startswith("https://simulator.invalid/images/")
        assert item["url"].endswith(".png")
        assert "a cat" in item["revised_prompt"]
    b64 = (
        await sim.post("/v1/images/generations", {"prompt": "a dog", "response_format": "b64_json"}, headers=AUTH)
    ).json()
    png = base64.b64decode(b64["data"][0]["b64_json"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [(None, "audio/mpeg", b"\xff\xfb"), ("wav", "audio/wav", b"RIFF")],
)
async def test_speech_returns_audio_bytes(sim, fmt, content_type, magic):
    body = {"model": "tts-1", "input": "Hello there", "voice": "alloy"}
    if fmt:
        body["response_format"] = fmt
    reply = await sim.post("/v1/audio/speech", body, headers=AUTH)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.body.startswith(magic)
    assert 100 <= len(reply.body) <= 4096


async def test_models_list(sim):
    data = (await sim.get("/v1/models", headers=AUTH)).json()
    assert data["object"] == "list"
    assert {"id", "object", "created", "owned_by"} <= set(data["data"][0])


# --- Azure ---------------------------------------------------------------------------------


async def test_azure_chat_uses_the_deployment_as_model(sim):
    body = chat_body()
    del body["model"]
    reply = await sim.post(AZURE_CHAT, body, headers=AZURE_AUTH, params={"api-version": "2024-10-21"})
    assert reply.status == 200
    assert reply.json()["model"] == "my-gpt"
    frames = (
        await sim.post(AZURE_CHAT, {**body, "stream": True}, headers=AZURE_AUTH, params={"api-version": "2024-10-21"})
    ).frames()
    assert frames[0].json()["model"] == "my-gpt"
    assert frames[-1].data == "[DONE]"


async def test_azure_embeddings_and_images(sim):
    params = {"api-version": "2024-10-21"}
    emb = await sim.post("/openai/deployments/emb/embeddings", {"input": "x"}, headers=AZURE_AUTH, params=params)
    assert emb.json()["model"] == "emb"
    img = await sim.post(
        "/openai/deployments/img/images/generations", {"prompt": "x"}, headers=AZURE_AUTH, params=params
    )
    assert img.json()["data"][0]["url"].startswith("https://simulator.invalid/images/")


async def test_azure_requires_api_version(sim):
    reply = await sim.post(AZURE_CHAT, chat_body(), headers=AZURE_AUTH)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error["code"] == "MissingApiVersionParameter"
    assert "api-version" in error["message"]


async def test_azure_requires_a_key(sim):
    reply = await sim.post(AZURE_CHAT, chat_body(), params={"api-version": "2024-10-21"})
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "401"


async def test_azure_status_switch_uses_azure_errors(sim):
    reply = await sim.post(
        AZURE_CHAT, chat_body(), params={"api-version": "2024-10-21"}, headers={**AZURE_AUTH, "x-sim-status": "429"}
    )
    assert reply.status == 429
    assert reply.json()["error"]["code"] == "429"


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "invalid_request_error", "invalid_api_key"),
        (429, "rate_limit_exceeded", "rate_limit_exceeded"),
        (500, "server_error", "server_error"),
        (503, "server_error", "service_unavailable"),
    ],
)
async def test_status_switch_answers_openai_errors(sim, status, kind, code):
    reply = await sim.post("/v1/chat/completions", chat_body(), headers={**AUTH, "x-sim-status": str(status)})
    assert reply.status == status
    assert reply.headers["x-simulator"] == "aigate"
    error = reply.json()["error"]
    assert error["type"] == kind
    assert error["code"] == code
    assert error["param"] is None
    assert "Simulated" in error["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "k"}])
async def test_missing_key_is_401(sim, headers):
    reply = await sim.post("/v1/chat/completions", chat_body(), headers=headers)
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"


async def test_require_key_rejects_other_keys():
    handle = await start_simulator(require_key="right")
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            url = handle.url + "/v1/chat/completions"
            async with session.post(url, json=chat_body(), headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "invalid_api_key"
            async with session.post(url, json=chat_body(), headers={"Authorization": "Bearer right"}) as resp:
                assert resp.status == 200
    finally:
        await handle.close()


async def test_invalid_requests_are_400(sim):
    not_json = await sim.post("/v1/chat/completions", data=b"{nope", headers=AUTH)
    assert not_json.status == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = await sim.post("/v1/chat/completions", {"model": "m"}, headers=AUTH)
    assert no_messages.status == 400
    assert no_messages.json()["error"]["param"] == "messages"
    no_model = await sim.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, headers=AUTH)
    assert no_model.status == 400


async def test_usage_false_and_token_details(sim):
    no_usage = (await sim.post("/v1/chat/completions", chat_body(), headers={**AUTH, "x-sim-usage": "false"})).json()
    assert "usage" not in no_usage
    frames = (
        await sim.post(
            "/v1/chat/completions",
            chat_body(stream=True, stream_options={"include_usage": True}),
            headers={**AUTH, "x-sim-usage": "false"},
        )
    ).frames()
    assert all(f.json()["choices"] for f in frames[:-1])  # no usage chunk
    detailed = (
        await sim.post(
            "/v1/chat/completions",
            chat_body(),
            headers={**AUTH, "x-sim-cached-tokens": "4", "x-sim-reasoning-tokens": "7"},
        )
    ).json()
    usage = detailed["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 7
    content = detailed["choices"][0]["message"]["content"]
    assert usage["completion_tokens"] == count_tokens(content) + 7
