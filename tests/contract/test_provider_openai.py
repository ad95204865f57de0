"""OpenAI-format adapter (openai, openai_compatible, azure_openai) against the simulator."""

from __future__ import annotations

import socket

import aiohttp
import orjson
import pytest

from aigate.providers import openai as oa
from aigate.providers import openai_wire
from aigate.providers.base import (
    ChatRequest,
    Platform,
    Timeouts,
    UpstreamError,
    UpstreamTimeout,
)
from aigate.providers.registry import chat_provider
from aigate.providers.tokens import count_messages, count_text
from aigate.simulator.server import start_simulator

REPLY = "Hello from the simulated upstream, in several chunks."
KEY = "sk-test-secret-key"


@pytest.fixture
async def sim():
    handle = await start_simulator(port=0)
    yield handle
    await handle.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def platform(sim, *, type: str = "openai", api_key: str = KEY, **kw) -> Platform:
    base = sim.url if type == "azure_openai" else sim.url + "/v1/"
    kw.setdefault("timeouts", Timeouts(connect_s=1, first_byte_s=2, total_s=5))
    return Platform(id="up", number=1, type=type, base_url=base, api_key=api_key, **kw)


def request(**kw) -> ChatRequest:
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault(
        "messages",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    return ChatRequest(**kw)


def prompt_tokens(messages) -> int:
    """The simulator's rule: 3 per message + ceil(chars / 4) per text."""
    return sum(3 + (len(m["content"]) + 3) // 4 for m in messages)


async def collect(stream):
    return [event async for event in stream]


# --- chat ------------------------------------------------------------------------------


async def test_chat_text_usage_and_body(sim, session) -> None:
    sim.script([{"reply": REPLY, "cached_tokens": 3, "reasoning_tokens": 5}])
    req = request(
        params={"temperature": 0.2, "max_tokens": 50},
        response_format={"type": "json_object"},
        extra={"seed": 7},
    )
    result = await chat_provider("openai").chat(session, platform(sim), req)

    assert result.content == REPLY
    assert result.finish_reason == "stop"
    assert result.upstream_id.startswith("chatcmpl-")
    assert result.openai["object"] == "chat.completion"
    assert orjson.loads(result.raw) == result.openai
    u = result.usage
    assert u.input_tokens == prompt_tokens(req.messages)
    assert u.output_tokens == (len(REPLY) + 3) // 4 + 5
    assert (u.cached_tokens, u.reasoning_tokens, u.estimated) == (3, 5, False)

    sent = sim.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["body"] == {
        "model": "gpt-4o-mini",
        "messages": req.messages,
        "temperature": 0.2,
        "max_tokens": 50,
        "response_format": {"type": "json_object"},
        "seed": 7,
    }


async def test_chat_without_key_sends_no_auth_header_and_extra_headers(sim, session) -> None:
    p = platform(sim, type="openai_compatible", api_key="", options={"headers": {"x-org": "a"}})
    with pytest.raises(UpstreamError) as err:  # the simulator insists on a key
        await chat_provider("openai_compatible").chat(session, p, request())
    sent = sim.requests[-1]
    assert "authorization" not in sent["headers"]
    assert sent["headers"]["x-org"] == "a"
    assert err.value.status == 401 and not err.value.retryable


async def test_stream_text_usage_and_untouched_chunks(sim, session) -> None:
    sim.script([{"reply": REPLY, "chunks": 5, "cached_tokens": 2}])
    req = request(extra={"stream_options": {"continuous_usage_stats": False}})
    events = await collect(chat_provider("openai").chat_stream(session, platform(sim), req))

    assert "".join(e.delta for e in events) == REPLY
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    usage = [e.usage for e in events if e.usage]
    assert len(usage) == 1 and events[-1].usage is usage[0]
    assert usage[0].input_tokens == prompt_tokens(req.messages)
    assert usage[0].output_tokens == (len(REPLY) + 3) // 4
    assert usage[0].cached_tokens == 2 and not usage[0].estimated
    for e in events:
        chunk = orjson.loads(e.openai_chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert e.upstream_id == chunk["id"]

    body = sim.requests[-1]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}


async def test_stream_marks_events_that_arrived_together(sim, session) -> None:
    """Events decoded from one upstream read say that another follows at once (``more``),
    the last of the read does not: the pump writes them to the client together."""
    sim.script([{"reply": REPLY, "chunks": 5}, {"reply": REPLY, "chunks": 3, "chunk_interval_ms": 30}])
    together = await collect(chat_provider("openai").chat_stream(session, platform(sim), request()))
    # an unpaced stream comes in one write: every event has company (``[DONE]`` ends it)
    assert len(together) == 8 and all(e.more for e in together)

    paced = await collect(chat_provider("openai").chat_stream(session, platform(sim), request()))
    assert "".join(e.delta for e in paced) == REPLY
    # reads: [role, delta 1], [delta 2], [delta 3, finish, usage, DONE]
    assert [e.more for e in paced] == [True, False, False, True, True, True]


@pytest.mark.parametrize(
    ("chunk", "text"),
    [
        (b'{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}', "Hi"),
        (
            '{"id":"c","usage":null,"choices":[{"delta":{"content":"héllo 世界"},"finish_reason":null}]}'.encode(),
            "héllo 世界",
        ),
        (b'{"id":"c","choices":[{"delta":{"content":""},"finish_reason":null}]}', ""),
        # anything else is parsed: escapes, other delta fields, finish, usage, errors, not JSON
        (b'{"id":"c","choices":[{"delta":{"content":"a\\"b"},"finish_reason":null}]}', None),
        (b'{"id":"c","choices":[{"delta":{"content":"a\\nb"},"finish_reason":null}]}', None),
        (b'{"id":"c","choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null}]}', None),
        (b'{"id":"c","choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}', None),
        (b'{"id":"c","choices":[{"delta":{"content":"x"},"finish_reason":null}],"usage":{"prompt_tokens":1}}', None),
        (b'{"error":{"message":"x"},"choices":[{"delta":{"content":"x"},"finish_reason":null}]}', None),
        (b'{"choices":[{"delta":{"content":"x"},"finish_reason":null}]', None),
        (b'{"choices":[{"delta":{"content": "x"},"finish_reason":null}]}', None),
    ],
)
def test_plain_delta_reads_only_plain_text_chunks(chunk: bytes, text: str | None) -> None:
    assert openai_wire.plain_delta(chunk) == text
    if text is not None:  # what the parse would have found
        assert orjson.loads(chunk)["choices"][0]["delta"]["content"] == text


async def test_passthrough_hands_over_reads_of_plain_chunks_whole(sim, session) -> None:
    """With ``sse_passthrough`` (the relay), a paced stream's content reads come as they
    were sent (``StreamEvent.sse``); the first chunk, the finish and usage are read event
    by event as before, and the reply and usage are the same either way."""
    sim.script([{"reply": REPLY, "chunks": 5, "chunk_interval_ms": 30}] * 2)
    provider = chat_provider("openai")
    passed = await collect(provider.chat_stream(session, platform(sim), request(sse_passthrough=True)))
    decoded = await collect(provider.chat_stream(session, platform(sim), request()))

    whole = [e.sse for e in passed if e.sse is not None]
    assert len(whole) >= 3 and all(openai_wire.passes_whole(read) for read in whole)
    assert all(e.delta == "" and e.openai_chunk is None for e in passed if e.sse is not None)
    assert all(e.sse is None for e in decoded)
    text = "".join(e.delta or openai_wire.sse_text(e.sse or b"") for e in passed)
    assert text == "".join(e.delta for e in decoded) == REPLY
    assert [e.usage for e in passed if e.usage] == [e.usage for e in decoded if e.usage]
    assert [e.finish_reason for e in passed if e.finish_reason] == ["stop"]
    assert passed[0].sse is None and passed[0].upstream_id  # the first chunk is parsed for its id


async def test_passthrough_estimates_from_the_reads_passed_on(sim, session) -> None:
    sim.script([{"reply": REPLY, "chunks": 5, "chunk_interval_ms": 30, "usage": False}])
    req = request(sse_passthrough=True)
    events = await collect(chat_provider("openai").chat_stream(session, platform(sim), req))
    assert any(e.sse for e in events)
    last = events[-1]
    assert last.usage is not None and last.usage.estimated
    assert last.usage.output_tokens == count_text(REPLY, "gpt-4o-mini")


_PLAIN = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}\n\n'


@pytest.mark.parametrize(
    ("read", "whole"),
    [
        (_PLAIN, True),
        (_PLAIN * 3, True),
        (_PLAIN.replace(b'"Hi"', b'"data: Hi"'), True),  # one event, its text holding "data: "
        (_PLAIN.replace(b'"Hi"', b'"data: Hi"') * 2, False),  # taken apart: the count cannot tell
        (b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', True),  # no finish field at all
        (_PLAIN.replace(b"null}],", b'"stop"}],'), False),  # a finish
        (_PLAIN.replace(b'"finish_reason":null', b'"finish_reason": null'), False),  # another layout
        (_PLAIN.replace(b'"usage":null', b'"usage":{"prompt_tokens":1}'), False),
        (_PLAIN + b"data: [DONE]\n\n", False),
        (b'data: {"error":{"message":"x"}}\n\n', False),
        (b": keep-alive\n\n" + _PLAIN, False),
        (b"event: error\n" + _PLAIN, False),
        (_PLAIN[:-2] + b"\ndata: {}\n\n", False),  # an event of two data lines
        (_PLAIN[:-2], False),  # an event cut across two reads
        (_PLAIN.replace(b"\n", b"\r\n"), False),
    ],
)
def test_passes_whole_only_reads_of_ordinary_chunks(read: bytes, whole: bool) -> None:
    assert openai_wire.passes_whole(read) is whole


def test_sse_text_reads_content_and_tool_arguments() -> None:
    tool = b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\\"a\\":1}"}}]}}]}\n\n'
    escaped = b'data: {"choices":[{"delta":{"content":"a\\"b"},"finish_reason":null}]}\n\n'
    assert openai_wire.sse_text(_PLAIN + tool + escaped + b"data: [DONE]\n\n") == 'Hi{"a":1}a"b'


def _chunk(content: str) -> bytes:
    delta = orjson.dumps({"content": content})
    return b'data: {"id":"c","choices":[{"index":0,"delta":' + delta + b',"finish_reason":null}],"usage":null}\n\n'


@pytest.mark.parametrize(
    "reads",
    [
        _PLAIN * 5,  # plain text: the regular expression
        _chunk('say "hi"\n') + _chunk("caf\u00e9 \\ ") + _chunk("\u2603"),  # escapes: decoded as JSON
        _PLAIN + b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}\n\n',  # the decoder
        _PLAIN + _chunk("").replace(b'{"content":""}', b'{"role":"assistant","content":"x"}'),  # another layout
    ],
)
def test_reads_text_is_what_the_decoder_reads(reads: bytes) -> None:
    assert openai_wire.passes_whole(reads)
    assert openai_wire.reads_text(reads) == openai_wire.sse_text(reads)
    assert openai_wire.reads_text(reads)  # not empty: the cases hold text


_LAYOUT = openai_wire.ChunkLayout.of_read(_PLAIN)


@pytest.mark.parametrize(
    ("read", "text"),
    [
        (_PLAIN, "Hi"),
        (_PLAIN.replace(b'"Hi"', '"héllo, 世界 [DONE]"'.encode()), "héllo, 世界 [DONE]"),
        (_PLAIN.replace(b'"Hi"', b'""'), ""),
        # anything else is not this layout's chunk: the long way decides
        (_PLAIN.replace(b'"Hi"', b'"a\\"b"'), None),  # an escape
        (_PLAIN.replace(b'"Hi"', b'"a"},"finish_reason":"stop","x":{"y":"b"'), None),  # a quote
        (_PLAIN.replace(b'"Hi"', b'"a\nb"'), None),
        (_PLAIN.replace(b'"Hi"', b'"a\rb"'), None),
        (_PLAIN.replace(b'"Hi"', b'"\xff"'), None),  # not UTF-8
        (_PLAIN.replace(b'"c"', b'"d"'), None),  # another id
        (_PLAIN.replace(b"null}],", b'"stop"}],'), None),
        (_PLAIN * 2, None),
        (_PLAIN[:-2], None),
        (_PLAIN[:40], None),
        (b"", None),
    ],
)
def test_a_chunk_layout_reads_only_chunks_like_its_own(read: bytes, text: str | None) -> None:
    assert _LAYOUT is not None
    assert _LAYOUT.text(read) == text
    if text is not None:  # what decoding and parsing the read finds
        assert openai_wire.sse_text(read) == text


@pytest.mark.parametrize(
    "read",
    [
        _PLAIN * 2,  # two events: one layout would miss the second's text
        _PLAIN.replace(b"null}],", b'"stop"}],'),
        _PLAIN.replace(b'"Hi"', b'"a\\"b"'),
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n',
    ],
)
def test_a_layout_is_taken_only_from_one_plain_text_chunk(read: bytes) -> None:
    assert openai_wire.ChunkLayout.of_read(read) is None


def test_a_layout_is_not_taken_from_an_event_of_several_lines() -> None:
    data = b'{"id":"c",\n"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}'
    assert openai_wire.plain_delta(data) == "Hi" and openai_wire.ChunkLayout.of_event(data) is None


@pytest.mark.parametrize("passthrough", [False, True])
async def test_a_paced_stream_is_read_through_its_layout(sim, session, monkeypatch, passthrough: bool) -> None:
    """After the first plain chunk, each read of one such chunk is checked against its
    layout and taken whole; the text, the chunks and the usage are what decoding gives."""
    hits: list[str] = []
    text_of = openai_wire.ChunkLayout.text

    def spied(self, read: bytes) -> str | None:
        text = text_of(self, read)
        if text is not None:
            hits.append(text)
        return text

    monkeypatch.setattr(openai_wire.ChunkLayout, "text", spied)
    sim.script([{"reply": REPLY, "chunks": 8, "chunk_interval_ms": 20}] * 2)
    provider = chat_provider("openai")
    events = await collect(provider.chat_stream(session, platform(sim), request(sse_passthrough=passthrough)))
    assert len(hits) >= 4  # the content reads after the first
    if passthrough:
        assert "".join(openai_wire.sse_text(e.sse) for e in events if e.sse) == "".join(hits)
    else:
        for e in events:  # every event's chunk is the upstream's, and says its text
            choices = orjson.loads(e.openai_chunk)["choices"] if e.openai_chunk else []
            assert e.delta == ((choices[0]["delta"].get("content") or "") if choices else "")
        assert "".join(e.delta for e in events) == REPLY
    decoded = await collect(provider.chat_stream(session, platform(sim), request()))
    assert [e.usage for e in events if e.usage] == [e.usage for e in decoded if e.usage]


def test_reply_text_keeps_the_order_and_a_bounded_number_of_parts() -> None:
    """A long stream keeps about one string per ``COMPACT`` events, not every read."""
    reply = openai_wire.ReplyText()
    assert not reply
    expected = []
    for i in range(1_000):
        if i % 100 == 99:  # a decoded event between passed reads
            reply.add_text(f"<{i}>")
            expected.append(f"<{i}>")
        else:
            reply.add_read(_chunk(f"w{i} "))
            expected.append(f"w{i} ")
        assert len(reply._parts) + len(reply._reads) <= 2 * openai_wire.ReplyText.COMPACT
    assert reply
    assert reply.text() == "".join(expected)
    assert reply.text() == "".join(expected)  # reading it twice changes nothing


async def test_usage_missing_is_estimated(sim, session) -> None:
    sim.script([{"reply": REPLY, "usage": False}, {"reply": REPLY, "usage": False}])
    req = request()
    provider = chat_provider("openai")
    expected_in = count_messages(req.messages, "gpt-4o-mini")  # tiktoken, o200k_base
    expected_out = count_text(REPLY, "gpt-4o-mini")

    result = await provider.chat(session, platform(sim), req)
    assert result.usage.estimated
    assert (result.usage.input_tokens, result.usage.output_tokens) == (expected_in, expected_out)

    events = await collect(provider.chat_stream(session, platform(sim), req))
    last = events[-1]
    assert last.usage is not None and last.usage.estimated and last.openai_chunk is None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (expected_in, expected_out)


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (404, False)])
async def test_error_statuses(sim, session, status: int, retryable: bool) -> None:
    sim.script([{"status": status}])
    with pytest.raises(UpstreamError) as err:
        await chat_provider("openai").chat(session, platform(sim), request())
    e = err.value
    assert (e.status, e.retryable, e.kind) == (status, retryable, "http")
    assert e.message == f"Simulated HTTP {status} error (aigate provider simulator)."
    assert orjson.loads(e.body)["error"]["message"] == e.message
    assert KEY not in str(e)


async def test_stream_error_status_raises_before_any_event(sim, session) -> None:
    sim.script([{"status": 503}])
    with pytest.raises(UpstreamError) as err:
        await collect(chat_provider("openai").chat_stream(session, platform(sim), request()))
    assert err.value.status == 503 and err.value.retryable


async def test_first_byte_timeout(sim, session) -> None:
    p = platform(sim, timeouts=Timeouts(connect_s=1, first_byte_s=0.1, total_s=5))
    sim.script([{"latency_ms": 1000}, {"ttft_ms": 1000}])
    with pytest.raises(UpstreamTimeout):
        await chat_provider("openai").chat(session, p, request())
    with pytest.raises(UpstreamTimeout) as err:
        await collect(chat_provider("openai").chat_stream(session, p, request()))
    assert err.value.retryable and err.value.kind == "timeout"


async def test_total_timeout_mid_stream(sim, session) -> None:
    p = platform(sim, timeouts=Timeouts(connect_s=1, first_byte_s=1, total_s=0.3))
    sim.script([{"chunks": 10, "chunk_interval_ms": 100}])
    events = []
    with pytest.raises(UpstreamTimeout):
        async for event in chat_provider("openai").chat_stream(session, p, request()):
            events.append(event)
    assert events  # the first deltas arrived before the deadline


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused(session) -> None:
    p = Platform(
        id="down",
        number=2,
        type="openai",
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        api_key=KEY,
    )
    with pytest.raises(UpstreamError) as err:
        await chat_provider("openai").chat(session, p, request())
    assert (err.value.kind, err.value.retryable) == ("connect", True)
    assert KEY not in err.value.message
    with pytest.raises(UpstreamError) as err:
        await collect(chat_provider("openai").chat_stream(session, p, request()))
    assert err.value.kind == "connect"


async def test_malformed_body_and_frame(sim, session) -> None:
    sim.script([{"malformed": True}, {"malformed": True, "malformed_after": 2}])
    with pytest.raises(UpstreamError) as err:
        await chat_provider("openai").chat(session, platform(sim), request())
    assert (err.value.kind, err.value.retryable) == ("protocol", True)
    assert err.value.body

    events = []
    with pytest.raises(UpstreamError) as err:
        async for event in chat_provider("openai").chat_stream(session, platform(sim), request()):
            events.append(event)
    assert err.value.kind == "protocol"
    assert len([e for e in events if e.delta]) == 2  # raised where the bad frame came


async def test_disconnect_mid_stream_is_a_protocol_error(sim, session) -> None:
    sim.script([{"disconnect_after": 3}])
    events = []
    with pytest.raises(UpstreamError) as err:
        async for event in chat_provider("openai").chat_stream(session, platform(sim), request()):
            events.append(event)
    assert (err.value.kind, err.value.retryable) == ("protocol", True)
    assert len([e for e in events if e.delta]) == 3


async def test_disconnect_without_response(sim, session) -> None:
    sim.script([{"disconnect_after": 0}])
    with pytest.raises(UpstreamError) as err:
        await chat_provider("openai").chat(session, platform(sim), request())
    assert err.value.retryable


async def test_in_stream_error_frame(sim, session) -> None:
    sim.script([{"error_after": 2}])
    with pytest.raises(UpstreamError) as err:
        await collect(chat_provider("openai").chat_stream(session, platform(sim), request()))
    assert err.value.retryable
    assert "Simulated HTTP 500" in err.value.message


# --- azure -------------------------------------------------------------------------------


async def test_azure_url_header_and_deployment(sim, session) -> None:
    p = platform(
        sim,
        type="azure_openai",
        options={"api_version": "2025-01-01", "deployments": {"gpt-4o": "prod-4o"}},
    )
    sim.script([{"reply": REPLY}, {"reply": REPLY}])
    result = await chat_provider("azure_openai").chat(session, p, request(model="gpt-4o"))
    assert result.content == REPLY
    sent = sim.requests[-1]
    assert sent["path"] == "/openai/deployments/prod-4o/chat/completions"
    assert sent["query"] == {"api-version": "2025-01-01"}
    assert sent["headers"]["api-key"] == KEY
    assert "authorization" not in sent["headers"]

    events = await collect(chat_provider("azure_openai").chat_stream(session, p, request()))
    assert "".join(e.delta for e in events) == REPLY
    sent = sim.requests[-1]
    assert sent["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"


async def test_azure_default_api_version_and_embeddings(sim, session) -> None:
    p = platform(sim, type="azure_openai")
    result = await oa.embeddings(session, p, {"model": "emb", "input": "abcdefgh"})
    assert result.usage.input_tokens == 2
    sent = sim.requests[-1]
    assert sent["path"] == "/openai/deployments/emb/embeddings"
    assert sent["query"] == {"api-version": oa.AZURE_DEFAULT_API_VERSION}


# --- other endpoints ---------------------------------------------------------------------


async def test_embeddings_usage(sim, session) -> None:
    body = {"model": "text-embedding-3-small", "input": ["abcd", "abcdefgh"]}
    result = await oa.embeddings(session, platform(sim), body)
    assert len(result.data["data"]) == 2
    assert (result.usage.input_tokens, result.usage.estimated) == (3, False)
    assert sim.requests[-1]["path"] == "/v1/embeddings"

    sim.script([{"usage": False}])
    result = await oa.embeddings(session, platform(sim), body)
    assert (result.usage.input_tokens, result.usage.estimated) == (count_text("abcd") + count_text("abcdefgh"), True)


async def test_images(sim, session) -> None:
    body = {"model": "dall-e-3", "prompt": "a red fox", "n": 2}
    result = await oa.images(session, platform(sim), body)
    assert len(result.data["data"]) == 2
    assert orjson.loads(result.raw) == result.data
    sent = sim.requests[-1]
    assert sent["path"] == "/v1/images/generations" and sent["body"] == body


async def test_speech(sim, session) -> None:
    body = {"model": "tts-1", "input": "Hello there", "voice": "alloy", "response_format": "wav"}
    result = await oa.speech(session, platform(sim), body)
    assert result.content.startswith(b"RIFF")
    assert result.content_type.startswith("audio/wav")
    assert sim.requests[-1]["path"] == "/v1/audio/speech"

    sim.script([{"status": 500}])
    with pytest.raises(UpstreamError) as err:
        await oa.speech(session, platform(sim), body)
    assert err.value.status == 500


async def test_post_json_generic(sim, session) -> None:
    result = await oa.post_json(session, platform(sim), "/embeddings", {"model": "m", "input": "abcd"})
    assert result.usage.input_tokens == 1


def test_registry() -> None:
    assert chat_provider("openai") is chat_provider("azure_openai")
    for kind in ("anthropic", "gemini", "openai_compatible"):
        assert chat_provider(kind)
    with pytest.raises(KeyError):
        chat_provider("http_job")


async def test_a_streamed_tool_call_counts_in_the_estimate_not_in_the_reply_text(sim, session) -> None:
    """Tool-call arguments are generated, so the usage estimate counts them; they are not
    the reply's text, which is what a chat's history keeps (``StreamEvent.reply``)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    sim.script([{"reply": REPLY, "chunks": 4, "usage": False}])
    req = request(extra={"tools": tools, "tool_choice": "required"})
    events = await collect(chat_provider("openai").chat_stream(session, platform(sim), req))

    arguments = "".join(
        call["function"].get("arguments", "")
        for e in events
        if e.openai_chunk
        for choice in orjson.loads(e.openai_chunk)["choices"]
        for call in choice["delta"].get("tool_calls", ())
    )
    reply = events[-1].reply
    assert arguments and all(e.reply is reply for e in events)  # one copy, shared with the consumer
    assert reply.text() == "" and "".join(e.delta for e in events) == ""
    assert reply.generated() == arguments
    usage = events[-1].usage
    assert usage is not None and usage.estimated and usage.output_tokens == count_text(arguments, "gpt-4o-mini")


def test_reply_text_keeps_tool_call_arguments_apart_and_bounded() -> None:
    reply = openai_wire.ReplyText()
    reply.add_tool_text('{"a":')
    assert reply and reply.text() == "" and reply.generated() == '{"a":'
    for i in range(1_000):
        reply.add_text(f"t{i}")
        reply.add_tool_text(f"{i},")
        assert len(reply._tool_parts) <= openai_wire.ReplyText.COMPACT
    assert reply.text() == "".join(f"t{i}" for i in range(1_000))
    assert reply.generated() == reply.text() + '{"a":' + "".join(f"{i}," for i in range(1_000))
