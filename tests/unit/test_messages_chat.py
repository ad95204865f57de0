"""Anthropic Messages <-> the internal chat request/answer: the pure translation
(providers/messages_chat.py)."""

from __future__ import annotations

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent

from aigate.providers import messages_chat as mc
from aigate.providers.base import Usage
from tests.strict import strict_parse


def test_system_blocks_images_tools_and_results_become_chat_messages():
    body = {
        "model": "m",
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
        "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.invalid/a.png"}},
                    {"type": "text", "text": "What?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
    }
    messages, params, extra = mc.chat_parts(body)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AA"}},
                {"type": "image_url", "image_url": {"url": "https://x.invalid/a.png"}},
                {"type": "text", "text": "What?"},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]
    assert params == {"max_tokens": 100, "temperature": 0.3, "top_p": 0.9, "stop": ["END"]}
    assert extra == {
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "F"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u1",
    }
    _, _, named = mc.chat_parts({**body, "tool_choice": {"type": "tool", "name": "f"}})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools",
        ),
    ],
)
def test_what_chat_cannot_express_names_the_field(body, param):
    with pytest.raises(mc.TranslationError) as caught:
        mc.chat_parts(body)
    assert caught.value.param == param


def test_a_chat_completion_becomes_a_strict_message():
    chat = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "refusal": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                    ],
                },
            }
        ]
    }
    usage = Usage(input_tokens=20, output_tokens=7, cached_tokens=5, cache_creation_tokens=3)
    message = strict_parse(Message, mc.message_document(chat, usage, model="gpt-4o-mini"))
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"a": 1} and message.stop_reason == "tool_use"
    # Anthropic's input_tokens exclude cache reads and writes
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.cache_creation_input_tokens,
    ) == (12, 5, 3)
    for finish, stop in [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]:
        doc = mc.message_document(
            {"choices": [{"finish_reason": finish, "message": {"content": "x"}}]}, usage, model="m"
        )
        assert doc["stop_reason"] == stop


def test_chat_chunks_become_anthropic_events():
    stream = mc.MessagesStream("gpt-4o-mini")
    frames = stream.chunk({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    frames += stream.chunk({"choices": [{"delta": {"content": "Hi"}}]})
    frames += stream.chunk(
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}}
            ]
        }
    )
    frames += stream.chunk(
        {
            "choices": [
                {
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        }
    )
    frames += stream.chunk({"choices": [], "usage": {"prompt_tokens": 3}})
    frames += stream.finish(Usage(input_tokens=3, output_tokens=4))
    events = []
    for frame in b"".join(frames).split(b"\n\n"):
        if frame:
            kind, data = frame.split(b"\n", 1)
            doc = orjson.loads(data.removeprefix(b"data: "))
            assert kind == b"event: " + doc["type"].encode()
            strict_parse(RawMessageStreamEvent, doc)
            events.append(doc)
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[4]["content_block"]["name"] == "f"
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] == 4


def test_errors_use_anthropic_types():
    assert mc.error_document(429, "slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert mc.error_document(502, "x")["error"]["type"] == "api_error"
    assert mc.error_document(504, "x")["error"]["type"] == "timeout_error"
