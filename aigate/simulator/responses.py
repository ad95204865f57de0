"""OpenAI Responses API wire format: ``POST /v1/responses`` (non-stream and stream).

Input: ``input`` as a string or a list of items (messages with string or
``input_text``/``input_image``/``output_text`` parts, ``function_call`` and
``function_call_output`` items), ``instructions``, ``tools`` (``type: function``),
``tool_choice``, ``text.format`` (``text``, ``json_object``, ``json_schema``).

Output: one ``message`` item with one ``output_text`` part, or, when ``tool_choice``
forces a function (``required`` or ``{"type": "function", "name"}``), one
``function_call`` item whose arguments follow the function's ``parameters`` schema. A
``json_schema`` format answers an instance of the schema (see ``schema_instance``).

The simulator stores nothing: ``previous_response_id`` answers OpenAI's 400 "not found"
(so a gateway that rebuilds the thread itself is proven never to forward it), and
``store`` is accepted and ignored.

Usage follows the chat rule of ``aigate.simulator.text``: 3 tokens per input item and
per ``instructions``, plus the text tokens; ``output_tokens`` includes
``reasoning_tokens``; ``input_tokens`` includes ``cached_tokens``.

Streams send the typed events OpenAI documents, each with a ``sequence_number``:
``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ...,
``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``, ``response.completed`` (function calls:
``response.function_call_arguments.delta``/``.done`` instead of the part events).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from aigate.simulator import schema_instance, text
from aigate.simulator.openai import OPENAI, json_mode_reply
from aigate.simulator.switches import RequestError

if TYPE_CHECKING:
    from aigate.simulator.server import Call

SSE_TYPE = "text/event-stream"
MALFORMED_FRAME = b'event: response.output_text.delta\ndata: {"type": "response.outp\n\n'


def _item_texts(item: Any) -> Iterator[str]:
    if isinstance(item, str):
        yield item
        return
    if not isinstance(item, dict):
        return
    kind = item.get("type", "message")
    if kind == "message":
        yield from text.part_texts(item.get("content"))
    elif kind == "function_call":
        yield str(item.get("name", "")) + str(item.get("arguments", ""))
    elif kind == "function_call_output":
        output = item.get("output")
        yield from text.part_texts(output) if isinstance(output, list) else [str(output or "")]


def _items(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value:
        return value
    raise RequestError("Missing required parameter: 'input'.", "input")


def _last_user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("type", "message") == "message" and (item.get("role") == "user"):
            return " ".join(text.part_texts(item.get("content")))
    return ""


def _forced_function(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    if not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "required":
        return tools[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        return next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
    return None


def _usage(call: Call, prompt: int, completion: int) -> dict[str, Any]:
    sw = call.switches
    completion += sw.reasoning_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": sw.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": sw.reasoning_tokens},
        "total_tokens": prompt + completion,
    }


def _response(body: dict[str, Any], model: str, status: str, output: list[Any]) -> dict[str, Any]:
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    return {
        "id": text.new_id("resp_sim"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


async def create(call: Call) -> web.StreamResponse:
    body = call.body_object()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("Missing required parameter: 'model'.", "model")
    if body.get("previous_response_id"):
        raise RequestError(
            f"Previous response with id '{body['previous_response_id']}' not found. "
            "(the simulator stores no responses)",
            "previous_response_id",
        )
    items = _items(body)
    conversation = [_item_texts(item) for item in items]
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        conversation.append(iter([body["instructions"]]))
    prompt = text.prompt_tokens(conversation)
    user_text = _last_user_text(items)
    function = _forced_function(body)
    if function is not None:
        echo = text.make_reply(call.switches.reply, user_text)
        arguments = orjson.dumps(schema_instance.instance(function.get("parameters"), echo)).decode()
        name = str(function.get("name") or "function")
        item: dict[str, Any] = {
            "type": "function_call",
            "id": text.new_id("fc_sim"),
            "call_id": text.new_id("call_sim"),
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
        reply, completion = arguments, text.count_tokens(name + arguments)
    else:
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            fmt = {"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}}
        reply = json_mode_reply(call, fmt, user_text)
        completion = text.count_tokens(reply)
        item = {
            "type": "message",
            "id": text.new_id("msg_sim"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply, "annotations": [], "logprobs": []}],
        }
    usage = _usage(call, prompt, completion) if call.switches.usage else None
    if call.stream:
        return await _stream(call, body, model, item, reply, usage)
    response = _response(body, model, "completed", [item])
    response["usage"] = usage
    return call.json(response)


async def _stream(
    call: Call, body: dict[str, Any], model: str, item: dict[str, Any], reply: str, usage: dict[str, Any] | None
) -> web.StreamResponse:
    numbers = itertools.count()
    response = _response(body, model, "in_progress", [])

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(numbers), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    item_id = item["id"]
    pieces = text.split_chunks(reply, call.switches.chunks)
    head = [event("response.created", response=response), event("response.in_progress", response=response)]
    if item["type"] == "function_call":
        head.append(
            event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
        )
        content = [
            event("response.function_call_arguments.delta", item_id=item_id, output_index=0, delta=piece)
            for piece in pieces
        ]
        tail = [event("response.function_call_arguments.done", item_id=item_id, output_index=0, arguments=reply)]
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        head.append(
            event("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
        )
        head.append(event("response.content_part.added", **where, part=part))
        content = [event("response.output_text.delta", **where, delta=piece, logprobs=[]) for piece in pieces]
        tail = [
            event("response.output_text.done", **where, text=reply, logprobs=[]),
            event("response.content_part.done", **where, part=item["content"][0]),
        ]
    tail.append(event("response.output_item.done", output_index=0, item=item))
    tail.append(
        event("response.completed", response={**response, "status": "completed", "output": [item], "usage": usage})
    )

    def error() -> bytes:
        status = call.switches.status or 500
        return event("error", code="server_error", message=text.fault_message(status), param=None)

    return await call.send_stream(SSE_TYPE, head, content, tail, MALFORMED_FRAME, error)


ROUTES = [("POST", "/v1/responses", OPENAI, create, False)]
