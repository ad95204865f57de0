"""Gemini adapter against the simulator: conversions, usage, OpenAI-shaped output."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from aigate.providers import gemini
from aigate.providers.base import ChatRequest, Platform, Timeouts, UpstreamError, UpstreamTimeout
from aigate.providers.registry import chat_provider
from aigate.simulator.server import start_simulator

REPLY = "Hi from the simulated Gemini model."
KEY = "AIza-test-key"
JPEG_B64 = "/9j/4AAQSkZJRg=="


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
    return Platform(id="gem", number=4, type="gemini", base_url=base or sim.url, api_key=KEY, **kw)


def request(**kw) -> ChatRequest:
    kw.setdefault("model", "gemini-2.5-flash")
    kw.setdefault(
        "messages",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    return ChatRequest(**kw)


def provider():
    return chat_provider("gemini")


async def collect(stream):
    return [event async for event in stream]


async def test_chat_text_usage_and_openai_document(sim, session) -> None:
    sim.script([{"reply": REPLY, "cached_tokens": 5, "reasoning_tokens": 7}])
    result = await provider().chat(session, platform(sim), request())

    assert result.content == REPLY
    assert result.finish_reason == "stop"
    u = result.usage
    assert (u.input_tokens, u.cached_tokens, u.reasoning_tokens) == (12, 5, 7)
    assert u.output_tokens == (len(REPLY) + 3) // 4 + 7 and not u.estimated
    doc = result.openai
    assert doc["object"] == "chat.completion"
    assert doc["id"] == result.upstream_id and doc["model"] == "gemini-2.5-flash"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": REPLY, "refusal": None}
    assert doc["usage"]["completion_tokens_details"]["reasoning_tokens"] == 7

    sent = sim.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == KEY
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }


async def test_request_conversion(sim, session) -> None:
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "developer", "content": "Rule two."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a/b.png?x=1"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/noext"}},
            ],
        },
        {"role": "assistant", "content": "Two images."},
        {"role": "user", "content": "And?"},
    ]
    req = request(
        messages=messages,
        params={"temperature": 0.3, "max_tokens": 64, "top_p": 0.8, "stop": ["X", "Y"]},
        response_format={"type": "json_object"},
    )
    result = await provider().chat(session, platform(sim, base=sim.url + "/v1beta/"), req)
    assert orjson.loads(result.content)["simulated"] is True  # the simulator saw JSON mode

    sent = sim.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Rule one.\n\nRule two."}]}
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "maxOutputTokens": 64,
        "topP": 0.8,
        "stopSequences": ["X", "Y"],
        "responseMimeType": "application/json",
    }
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare"},
                {"inlineData": {"mimeType": "image/jpeg", "data": JPEG_B64}},
                {
                    "fileData": {
                        "mimeType": "image/png",
                        "fileUri": "https://example.com/a/b.png?x=1",
                    }
                },
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/noext"}},
            ],
        },
        {"role": "model", "parts": [{"text": "Two images."}]},
        {"role": "user", "parts": [{"text": "And?"}]},
    ]


async def test_stream_text_usage_and_openai_chunks(sim, session) -> None:
    sim.script([{"reply": REPLY, "chunks": 4, "cached_tokens": 2}])
    events = await collect(provider().chat_stream(session, platform(sim), request()))

    sent = sim.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent["query"] == {"alt": "sse"}
    assert "".join(e.delta for e in events) == REPLY
    chunks = [orjson.loads(e.openai_chunk) for e in events]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 12
    u = events[-1].usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens) == (12, (len(REPLY) + 3) // 4, 2)


async def test_stream_without_openai_chunks_keeps_text_and_usage(sim, session) -> None:
    """The App API stream reads no OpenAI chunks: none are built, the rest is unchanged."""
    sim.script([{"reply": REPLY, "chunks": 4, "cached_tokens": 2}])
    events = await collect(provider().chat_stream(session, platform(sim), request(openai_chunks=False)))

    assert all(e.openai_chunk is None for e in events)
    assert "".join(e.delta for e in events) == REPLY
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    u = events[-1].usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens) == (12, (len(REPLY) + 3) // 4, 2)


async def test_usage_missing_is_estimated(sim, session) -> None:
    sim.script([{"reply": REPLY, "usage": False}, {"reply": REPLY, "usage": False}])
    result = await provider().chat(session, platform(sim), request())
    assert result.usage.estimated and result.usage.output_tokens == (len(REPLY) + 3) // 4
    events = await collect(provider().chat_stream(session, platform(sim), request()))
    assert events[-1].usage.estimated


async def test_function_call_answer(sim, session) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    req = request(extra={"tools": [tool], "tool_choice": "required"})
    result = await provider().chat(session, platform(sim), req)
    body = sim.requests[-1]["body"]
    assert body["tools"] == [{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object"}}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert result.finish_reason == "tool_calls"
    (call,) = result.openai["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "lookup", "arguments": "{}"}


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
async def test_error_statuses(sim, session, status: int, retryable: bool) -> None:
    sim.script([{"status": status}])
    with pytest.raises(UpstreamError) as err:
        await provider().chat(session, platform(sim), request())
    assert (err.value.status, err.value.retryable) == (status, retryable)
    assert err.value.message == f"Simulated HTTP {status} error (aigate provider simulator)."


async def test_stream_faults(sim, session) -> None:
    sim.script([{"malformed": True}, {"disconnect_after": 2}, {"error_after": 1, "status": 503}])
    for kind in ("protocol", "protocol", "http"):
        with pytest.raises(UpstreamError) as err:
            await collect(provider().chat_stream(session, platform(sim), request()))
        assert (err.value.kind, err.value.retryable) == (kind, True)
    assert err.value.status == 503


async def test_first_byte_timeout(sim, session) -> None:
    p = platform(sim, timeouts=Timeouts(connect_s=1, first_byte_s=0.1, total_s=5))
    sim.script([{"latency_ms": 1000}, {"ttft_ms": 1000}])
    with pytest.raises(UpstreamTimeout):
        await provider().chat(session, p, request())
    with pytest.raises(UpstreamTimeout):
        await collect(provider().chat_stream(session, p, request()))


def test_finish_reasons_and_usage_mapping() -> None:
    doc = {
        "candidates": [
            {
                "content": {"parts": [{"text": "plan", "thought": True}, {"text": "cut"}]},
                "finishReason": "MAX_TOKENS",
            }
        ]
    }
    assert gemini.read_candidate(doc) == ("cut", [], "length")
    doc["candidates"][0]["finishReason"] = "SAFETY"
    assert gemini.read_candidate(doc)[2] == "content_filter"
    assert gemini.read_candidate({"promptFeedback": {"blockReason": "OTHER"}}) == (
        "",
        [],
        "content_filter",
    )
    u = gemini.parse_usage(
        {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 6,
            "cachedContentTokenCount": 3,
        }
    )
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cached_tokens) == (10, 10, 6, 3)
