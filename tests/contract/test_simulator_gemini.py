"""The simulator's Gemini wire format, over real HTTP."""

from __future__ import annotations

import orjson
import pytest

from aigate.simulator.server import start_simulator
from aigate.simulator.text import REPLY_PREFIX, count_tokens

KEY = {"x-goog-api-key": "gemini-key"}
GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"


def body(text: str = "Hello Gemini", **extra: object) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def joined_text(events: list[dict]) -> str:
    return "".join(part.get("text", "") for e in events for part in e["candidates"][0]["content"]["parts"])


async def test_generate_content_shape_and_usage(sim):
    request = body(
        systemInstruction={"parts": [{"text": "Be brief."}]},
        generationConfig={"temperature": 0.2, "maxOutputTokens": 64, "topP": 0.9, "stopSequences": ["END"]},
    )
    reply = await sim.post(GENERATE, request, headers=KEY)
    assert reply.status == 200
    assert reply.headers["x-simulator"] == "aigate"
    data = reply.json()
    candidate = data["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["index"] == 0
    assert candidate["content"]["role"] == "model"
    text = candidate["content"]["parts"][0]["text"]
    assert text == f"{REPLY_PREFIX} Hello Gemini"
    prompt = 3 + count_tokens("Hello Gemini") + 3 + count_tokens("Be brief.")
    assert data["usageMetadata"] == {
        "promptTokenCount": prompt,
        "candidatesTokenCount": count_tokens(text),
        "totalTokenCount": prompt + count_tokens(text),
    }
    assert data["modelVersion"] == "gemini-2.0-flash"
    assert data["responseId"]


async def test_key_in_query_and_other_parts(sim):
    request = {
        "contents": [
            {"role": "user", "parts": [{"text": "first"}]},
            {"role": "model", "parts": [{"text": "answer"}]},
            {
                "role": "user",
                "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://bucket/v.mp4"}},
                    {"text": "describe"},
                ],
            },
        ]
    }
    reply = await sim.post(GENERATE, request, params={"key": "gemini-key"})
    assert reply.status == 200
    data = reply.json()
    assert data["candidates"][0]["content"]["parts"][0]["text"].endswith("describe")
    assert data["usageMetadata"]["promptTokenCount"] == 9 + sum(
        count_tokens(t) for t in ("first", "answer", "describe")
    )


async def test_sse_stream(sim):
    plain = (await sim.post(GENERATE, body(), headers=KEY)).json()
    reply = await sim.post(STREAM, body(), headers=KEY, params={"alt": "sse"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    frames = reply.frames()
    assert all(f.event is None for f in frames)
    assert "[DONE]" not in reply.body.decode()
    events = [f.json() for f in frames]
    assert len(events) == 8
    assert joined_text(events) == plain["candidates"][0]["content"]["parts"][0]["text"]
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])
    assert all("usageMetadata" not in e for e in events[:-1])
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"] == plain["usageMetadata"]


async def test_json_array_stream(sim):
    plain = (await sim.post(GENERATE, body(), headers=KEY)).json()
    reply = await sim.post(STREAM, body(), headers={**KEY, "x-sim-chunks": "3"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    events = orjson.loads(reply.body)
    assert isinstance(events, list)
    assert len(events) == 3
    assert joined_text(events) == plain["candidates"][0]["content"]["parts"][0]["text"]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["totalTokenCount"] > 0


async def test_json_response_mime_type(sim):
    request = body(generationConfig={"responseMimeType": "application/json"})
    data = (await sim.post(GENERATE, request, headers=KEY)).json()
    parsed = orjson.loads(data["candidates"][0]["content"]["parts"][0]["text"])
    assert parsed["simulated"] is True


async def test_forced_function_call(sim):
    request = body(
        tools=[{"functionDeclarations": [{"name": "get_weather"}]}],
        toolConfig={"functionCallingConfig": {"mode": "ANY"}},
    )
    data = (await sim.post(GENERATE, request, headers=KEY)).json()
    part = data["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "get_weather", "args": {}}}


async def test_usage_switches(sim):
    headers = {**KEY, "x-sim-cached-tokens": "3", "x-sim-reasoning-tokens": "10"}
    data = (await sim.post(GENERATE, body(), headers=headers)).json()
    usage = data["usageMetadata"]
    assert usage["cachedContentTokenCount"] == 3
    assert usage["thoughtsTokenCount"] == 10
    assert usage["totalTokenCount"] == (usage["promptTokenCount"] + usage["candidatesTokenCount"] + 10)
    bare = (await sim.post(GENERATE, body(), headers={**KEY, "x-sim-usage": "no"})).json()
    assert "usageMetadata" not in bare
    frames = (await sim.post(STREAM, body(), params={"alt": "sse"}, headers={**KEY, "x-sim-usage": "no"})).frames()
    assert all("usageMetadata" not in f.json() for f in frames)


async def test_embed_and_count(sim):
    one = (
        await sim.post(
            "/v1beta/models/text-embedding-004:embedContent", {"content": {"parts": [{"text": "hi"}]}}, headers=KEY
        )
    ).json()
    assert len(one["embedding"]["values"]) == 8
    batch = (
        await sim.post(
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            {"requests": [{"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 4}] * 2},
            headers=KEY,
        )
    ).json()
    assert [len(e["values"]) for e in batch["embeddings"]] == [4, 4]
    count = (await sim.post("/v1beta/models/gemini-2.0-flash:countTokens", body("abcd"), headers=KEY)).json()
    assert count == {"totalTokens": 3 + 1}


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ],
)
async def test_status_switch_answers_gemini_errors(sim, status, name):
    reply = await sim.post(GENERATE, body(), headers={**KEY, "x-sim-status": str(status)})
    assert reply.status == status
    assert reply.json() == {"error": {"code": status, "message": reply.json()["error"]["message"], "status": name}}


async def test_missing_key_is_permission_denied(sim):
    reply = await sim.post(GENERATE, body())
    assert reply.status == 403
    assert reply.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_wrong_key_is_unauthenticated():
    handle = await start_simulator(require_key="good")
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            url = handle.url + GENERATE
            async with session.post(url, json=body(), params={"key": "bad"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["status"] == "UNAUTHENTICATED"
            async with session.post(url, json=body(), params={"key": "good"}) as resp:
                assert resp.status == 200
    finally:
        await handle.close()


async def test_missing_contents_is_invalid_argument(sim):
    reply = await sim.post(GENERATE, {"generationConfig": {}}, headers=KEY)
    assert reply.status == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_stream_faults(sim):
    malformed = await sim.post(
        STREAM, body(), params={"alt": "sse"}, headers={**KEY, "x-sim-malformed": "1", "x-sim-malformed-after": "2"}
    )
    frames = malformed.frames()
    assert len(frames) == 9
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(frames[2].data)
    failed = await sim.post(
        STREAM, body(), params={"alt": "sse"}, headers={**KEY, "x-sim-error-after": "1", "x-sim-status": "503"}
    )
    assert failed.status == 200
    last = failed.frames()[-1].json()
    assert last["error"]["status"] == "UNAVAILABLE"
    array = await sim.post(STREAM, body(), headers={**KEY, "x-sim-error-after": "1"})
    events = orjson.loads(array.body)
    assert events[-1]["error"]["code"] == 500
