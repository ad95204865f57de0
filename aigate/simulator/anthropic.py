"""Anthropic Messages wire format: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Usage arithmetic follows Anthropic: ``input_tokens`` excludes cache reads and writes
(``input_tokens = prompt - cached_tokens - cache_creation_tokens``, never below 0) and
``output_tokens`` includes ``reasoning_tokens`` (thinking).

JSON mode: a forced tool call (``tool_choice`` ``{"type": "tool", "name"}`` or ``any``)
answers one ``tool_use`` block whose ``input`` follows the tool's ``input_schema`` (see
``aigate.simulator.schema_instance``; string fields hold the reply echo); streamed, the
input arrives as ``input_json_delta`` pieces of its JSON text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from aigate.simulator import schema_instance, text
from aigate.simulator.openai import bearer_key
from aigate.simulator.switches import RequestError

if TYPE_CHECKING:
    from aigate.simulator.server import Call

SSE_TYPE = "text/event-stream"
MALFORMED_FRAME = b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class AnthropicDialect:
    """``x-api-key`` (or ``Authorization: Bearer``, as the current SDK sends by default)
    and ``anthropic-version`` headers; ``{"type": "error", "error": {...}}``."""

    def precheck(self, call: Call) -> web.Response | None:
        headers = call.request.headers
        key = headers.get("x-api-key", "") or bearer_key(call.request)
        if not key:
            return call.error(401, "x-api-key header is required (simulated)")
        required = call.state.require_key
        if required is not None and key != required:
            return call.error(401, "invalid x-api-key (simulated)")
        if not headers.get("anthropic-version"):
            return call.error(400, "anthropic-version: header is required")
        return None

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


ANTHROPIC = AnthropicDialect()


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _system_texts(system: Any) -> list[str]:
    if isinstance(system, str):
        return [system] if system else []
    return list(text.part_texts(system))


def _prompt_tokens(body: dict[str, Any], messages: list[Any]) -> int:
    conversation = [text.part_texts(m.get("content")) if isinstance(m, dict) else () for m in messages]
    system = _system_texts(body.get("system"))
    if system:
        conversation.append(iter(system))
    return text.prompt_tokens(conversation)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(text.part_texts(message.get("content")))
    return ""


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The tool ``tool_choice`` forces (``any`` or a named ``tool``), if any."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return choice["name"]
    if choice.get("type") == "any":
        first = tools[0] if isinstance(tools[0], dict) else {}
        return str(first.get("name") or "tool")
    return None


def _tool_schema(body: dict[str, Any], name: str) -> dict[str, Any]:
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("name") == name:
            schema = tool.get("input_schema")
            return schema if isinstance(schema, dict) else {}
    return {}


def _validate(body: dict[str, Any]) -> tuple[str, list[Any]]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise RequestError("max_tokens: Field required")
    if max_tokens < 1:
        raise RequestError("max_tokens: must be greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: at least one message is required")
    return model, messages


def _usage(call: Call, prompt: int, completion: int) -> dict[str, int]:
    sw = call.switches
    return {
        "input_tokens": max(0, prompt - sw.cached_tokens - sw.cache_creation_tokens),
        "output_tokens": completion + sw.reasoning_tokens,
        "cache_read_input_tokens": sw.cached_tokens,
        "cache_creation_input_tokens": sw.cache_creation_tokens,
    }


async def messages(call: Call) -> web.StreamResponse:
    body = call.body_object()
    model, conversation = _validate(body)
    prompt = _prompt_tokens(body, conversation)
    tool = _forced_tool(body)
    if tool is not None:
        # JSON mode: the forced tool's input follows its input_schema
        echo = text.make_reply(call.switches.reply, _last_user_text(conversation))
        arguments = schema_instance.instance(_tool_schema(body, tool), echo)
        reply, stop_reason = orjson.dumps(arguments).decode(), "tool_use"
        completion = text.count_tokens(tool + reply)
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": text.new_id("toolu_sim"),
            "name": tool,
            "input": arguments,
        }
    else:
        reply = text.make_reply(call.switches.reply, _last_user_text(conversation))
        stop_reason, completion = "end_turn", text.count_tokens(reply)
        block = {"type": "text", "text": reply}
    message: dict[str, Any] = {
        "id": text.new_id("msg_sim"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }
    if call.stream:
        return await _stream(call, message, reply, prompt, completion)
    if call.switches.usage:
        message["usage"] = _usage(call, prompt, completion)
    return call.json(message)


async def _stream(call: Call, message: dict[str, Any], reply: str, prompt: int, completion: int) -> web.StreamResponse:
    with_usage = call.switches.usage
    block = message["content"][0]
    start = {**message, "content": [], "stop_reason": None}
    if with_usage:
        usage = _usage(call, prompt, completion)
        start["usage"] = {**usage, "output_tokens": 1}
    if block["type"] == "tool_use":
        opening = {**block, "input": {}}
        delta_type, field = "input_json_delta", "partial_json"
    else:
        opening = {"type": "text", "text": ""}
        delta_type, field = "text_delta", "text"
    head = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}),
        _event("ping", {"type": "ping"}),
    ]
    content = [
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": delta_type, field: piece},
            },
        )
        for piece in text.split_chunks(reply, call.switches.chunks)
    ]
    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
    }
    if with_usage:
        final["usage"] = {"output_tokens": usage["output_tokens"]}
    tail = [
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event("message_delta", final),
        _event("message_stop", {"type": "message_stop"}),
    ]

    def error() -> bytes:
        status = call.switches.status or 529
        return b"event: error\ndata: " + call.dialect.error_body(status, text.fault_message(status)) + b"\n\n"

    return await call.send_stream(SSE_TYPE, head, content, tail, MALFORMED_FRAME, error)


async def count_tokens(call: Call) -> web.Response:
    body = call.body_object()
    conversation = body.get("messages")
    if not isinstance(conversation, list) or not conversation:
        raise RequestError("messages: at least one message is required")
    return call.json({"input_tokens": _prompt_tokens(body, conversation)})


ROUTES = [
    ("POST", "/v1/messages", ANTHROPIC, messages, False),
    ("POST", "/v1/messages/count_tokens", ANTHROPIC, count_tokens, False),
]
