"""The Anthropic Messages API expressed as the internal (OpenAI-shaped) chat request, and
the chat answer back as Anthropic's: pure functions, for ``/v1/messages`` on platforms
that are not Anthropic.

Request (``chat_parts``):

* ``system`` (a string or text blocks) -> a leading system message;
* user content: text blocks -> text parts; images (base64 -> a data URL, url -> the url)
  -> ``image_url`` parts; ``tool_result`` blocks -> ``role: tool`` messages (before the
  rest of that user turn, as OpenAI orders them; an ``is_error`` result is prefixed
  ``Error:``); assistant content: text -> content, ``tool_use`` -> ``tool_calls``
  (arguments = the input as JSON); ``thinking`` blocks are dropped (no chat equivalent);
  other blocks (documents, server tool results) are a 400 naming ``messages``;
* ``tools`` (custom tools: name, description, input_schema) -> function tools; server
  tools (a ``type`` such as ``web_search_20250305``) are a 400 naming ``tools``;
  ``tool_choice`` auto/any/tool/none -> auto/required/function/none, and
  ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
* ``max_tokens``, ``temperature``, ``top_p``, ``stop_sequences`` (-> ``stop``) and
  ``metadata.user_id`` (-> ``user``) carry over; ``top_k`` has no chat equivalent.

Answer (``message_document``): one ``text`` block and a ``tool_use`` block per tool call;
finish reasons stop/length/tool_calls/content_filter -> end_turn/max_tokens/tool_use/
refusal; usage: ``input_tokens`` excludes cache reads and writes, as Anthropic counts.

Streams (``MessagesStream``): chat chunks -> ``message_start``, per block
``content_block_start`` / ``content_block_delta`` (``text_delta`` or
``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop reason and
output tokens) and ``message_stop``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from .base import Usage

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class TranslationError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# --- request ----------------------------------------------------------------------------


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(b.get("text", "") for b in value if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        raise TranslationError(f"{where}: unsupported image source {source.get('type')!r}.", "messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    content = block.get("content")
    text = _text_of(content) if not isinstance(content, str) else content
    if block.get("is_error"):
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of blocks.", "messages")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image(block, f"{where}.content[{index}]"))
        elif kind == "tool_result":
            tools.append(_tool_result(block))
        else:
            raise TranslationError(
                f"{where}.content[{index}]: the block type {kind!r} is not available on this model's platform.",
                "messages",
            )
    out = tools
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content must be a string or an array of blocks.", "messages")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        # thinking / redacted_thinking: the model's own notes, not part of the chat
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise TranslationError(
                f"tools[{index}]: the tool type {kind!r} is not available on "
                "this model's platform (only custom tools are).",
                "tools",
            )
        function = {"name": tool.get("name", ""), "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    if not isinstance(choice, dict):
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}, parallel
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind or "")
    if mapped is None:
        raise TranslationError(f"tool_choice.type {kind!r} is not supported.", "tool_choice")
    return mapped, parallel


def chat_parts(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(messages, params, extra) of the chat request for a Messages API request."""
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body.get("messages") or ()):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise TranslationError(f"{where}.role must be user or assistant.", "messages")
        if message["role"] == "user":
            messages += _user(message.get("content"), where)
        else:
            messages.append(_assistant(message.get("content"), where))
    params: dict[str, Any] = {"max_tokens": body.get("max_tokens")}
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            params[key] = body[key]
    if body.get("stop_sequences"):
        params["stop"] = list(body["stop_sequences"])
    extra: dict[str, Any] = {}
    if body.get("tools"):
        extra["tools"] = _tools(body["tools"])
        choice, parallel = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            extra["tool_choice"] = choice
        if parallel is not None:
            extra["parallel_tool_calls"] = parallel
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str):
        extra["user"] = user
    return messages, params, extra


# --- answer -----------------------------------------------------------------------------


def usage_document(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens - usage.cache_creation_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _input(arguments: str) -> Any:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def message_document(chat: dict[str, Any], usage: Usage, *, model: str) -> dict[str, Any]:
    """A chat completion (OpenAI shape) as an Anthropic ``message``."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu"),
                "name": fn.get("name", ""),
                "input": _input(fn.get("arguments", "")),
            }
        )
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_document(usage),
    }


# --- streams ----------------------------------------------------------------------------


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass
class MessagesStream:
    """Turns chat completion chunks into Anthropic's stream events."""

    model: str
    message_id: str = field(default_factory=lambda: new_id("msg"))
    index: int = -1  # the open content block, -1 when none
    open_kind: str = ""  # text | tool_use
    calls: dict[int, int] = field(default_factory=dict)  # chat tool_calls index -> block index
    open_call: int | None = None
    finish_reason: str | None = None
    started: bool = False

    def start(self, input_tokens: int = 0) -> list[bytes]:
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        }
        return [event("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self.index < 0 or not self.open_kind:
            return []
        self.open_kind = ""
        return [event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.open_kind = block["type"]
        out.append(
            event("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})
        )
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = [] if self.started else self.start()
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.open_kind != "text":
                    out += self._open({"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                number = call.get("index", 0)
                fn = call.get("function") or {}
                if number not in self.calls:
                    out += self._open(
                        {
                            "type": "tool_use",
                            "id": call.get("id") or new_id("toolu"),
                            "name": fn.get("name", ""),
                            "input": {},
                        }
                    )
                    self.calls[number] = self.index
                if fn.get("arguments") and self.calls[number] == self.index:
                    out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self, usage: Usage) -> list[bytes]:
        out: list[bytes] = [] if self.started else self.start(usage.input_tokens)
        out += self._close()
        stop = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        out.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": usage_document(usage),
                },
            )
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        return out


def error_document(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body for an HTTP status."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }.get(status)
    if kind is None:
        kind = "api_error" if status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": message}}
