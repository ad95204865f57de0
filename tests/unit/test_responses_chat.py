"""Responses API <-> chat completions: the pure translation (providers/responses_chat.py)."""

from __future__ import annotations

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from aigate.providers import responses_chat as rc
from aigate.providers.base import Usage
from tests.strict import strict_parse

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def test_items_instructions_tools_and_format_become_a_chat_request():
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
        "user": "u1",
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
    }
    history = [
        {"role": "user", "content": "Earlier"},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_0",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Before", "annotations": []}],
        },
    ]
    messages, params, extra, fmt = rc.chat_parts(body, history)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Earlier"},
        {"role": "assistant", "content": "Before"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]
    assert params == {"max_tokens": 50, "temperature": 0.2}
    assert extra == {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": TOOL["parameters"],
                    "description": "Weather",
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "user": "u1",
    }
    assert fmt == {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 3}, "input"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "computer_call"}]}, "input[0]"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format"),
    ],
)
def test_what_chat_cannot_express_names_the_field(body, param):
    with pytest.raises(rc.TranslationError) as caught:
        rc.chat_parts(body, [])
    assert caught.value.param == param


def test_a_chat_completion_becomes_a_strict_response():
    chat = {
        "id": "x",
        "object": "chat.completion",
        "model": "claude",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
            }
        ],
    }
    usage = Usage(input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1)
    body = {"model": "claude", "input": "hi", "tools": [TOOL], "previous_response_id": "resp_a"}
    doc = rc.response_document(body, chat, usage, response_id="resp_b", model="claude")
    response = strict_parse(Response, doc)
    assert response.id == "resp_b" and response.previous_response_id == "resp_a"
    assert response.output_text == "Let me check."
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.output[1].call_id == "call_1"
    assert (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.input_tokens_details.cached_tokens,
        response.usage.output_tokens_details.reasoning_tokens,
    ) == (10, 5, 2, 1)
    cut = dict(chat, choices=[{**chat["choices"][0], "finish_reason": "length"}])
    incomplete = rc.response_document(body, cut, usage, response_id="r", model="m")
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}


def _events(frames: list[bytes]) -> list[dict]:
    out = []
    for frame in b"".join(frames).split(b"\n\n"):
        if frame:
            kind, data = frame.split(b"\n", 1)
            doc = orjson.loads(data.removeprefix(b"data: "))
            assert kind == b"event: " + doc["type"].encode()
            out.append(doc)
    return out


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_chat_chunks_become_typed_stream_events():
    stream = rc.ResponsesStream({"model": "m", "input": "x"}, "resp_1", "m")
    frames = stream.start()
    frames += stream.chunk(_chunk({"role": "assistant", "content": ""}))
    frames += stream.chunk(_chunk({"content": "Hel"}))
    frames += stream.chunk(_chunk({"content": "lo"}))
    frames += stream.chunk(
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        )
    )
    frames += stream.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    frames += stream.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"))
    closing, response = stream.finish(Usage(input_tokens=3, output_tokens=4))
    events = _events(frames + closing)
    for event in events:
        strict_parse(ResponseStreamEvent, event)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = strict_parse(Response, events[-1]["response"])
    assert final.output_text == "Hello" and final.output[1].arguments == '{"a":1}'
    assert response == events[-1]["response"] and final.usage.total_tokens == 7


def test_an_empty_answer_is_still_one_message():
    stream = rc.ResponsesStream({"model": "m", "input": "x"}, "resp_1", "m")
    opening = stream.start()
    closing, response = stream.finish(Usage())
    events = _events(opening + closing)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        strict_parse(ResponseStreamEvent, event)
    assert response["output"][0]["content"][0]["text"] == ""
