"""The OpenAI Responses API expressed as chat completions, and back: pure functions.

Platforms that do not speak the Responses API natively get it through this translation.

Request (``chat_parts``):

* ``instructions`` -> a leading system message; ``input`` (a string, or items) -> chat
  messages: message items (roles user, assistant, system, developer; content a string or
  ``input_text``/``output_text``/``refusal``/``input_image`` parts) keep their role;
  consecutive ``function_call`` items become one assistant message with ``tool_calls``;
  ``function_call_output`` items become ``role: tool`` messages;
* ``tools`` of type ``function`` -> chat function tools (other tool types, e.g.
  ``web_search``, have no chat equivalent: a 400 naming ``tools``); ``tool_choice``
  ``{"type": "function", "name"}`` -> ``{"type": "function", "function": {"name"}}``;
* ``text.format`` json_schema / json_object -> ``response_format``;
* ``max_output_tokens`` -> ``max_tokens``; ``temperature``, ``top_p``,
  ``parallel_tool_calls`` and ``user`` pass as they are; ``reasoning.effort`` ->
  ``reasoning_effort``.

Answer (``response_document``): a chat completion -> a ``response`` object with one
``message`` item (one ``output_text`` part) when there is text and one ``function_call``
item per tool call; usage renamed (``input_tokens``, ``output_tokens`` and their
details); finish reason ``length`` -> status ``incomplete`` (``max_output_tokens``).

Streams (``ResponsesStream``): chat chunks -> the typed Responses events, numbered by
``sequence_number``: ``response.created``, ``response.in_progress``, then per item
``response.output_item.added``, text (``content_part.added``, ``output_text.delta`` ...,
``output_text.done``, ``content_part.done``) or function call
(``function_call_arguments.delta`` ..., ``.done``), ``response.output_item.done``, and
``response.completed`` with the whole response and its usage.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .base import Usage

# request fields that configure the response object itself rather than the model
ECHOED = (
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
    "text",
    "reasoning",
    "user",
)


class TranslationError(ValueError):
    """A request the translation cannot express; ``param`` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# --- request ----------------------------------------------------------------------------


def input_items(value: Any) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise TranslationError("'input' must be a string or an array of input items.", "input")


def _chat_content(content: Any, index: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"input[{index}].content must be a string or an array.", f"input[{index}].content")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "input_image":
            url = part.get("image_url")
            if not url:
                raise TranslationError(
                    "input_image needs an image_url (file ids are not supported).", f"input[{index}].content"
                )
            image: dict[str, Any] = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise TranslationError(
                f"input[{index}].content: unsupported part type {kind!r}.", f"input[{index}].content"
            )
    return parts


def _text_only(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Assistant and system messages carry text: parts joined to one string."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def items_to_messages(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input (and output) items -> chat messages."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise TranslationError(
                    f"input[{index}].role must be user, assistant, system or developer.", f"input[{index}].role"
                )
            content = _chat_content(item.get("content"), index)
            if role != "user":
                content = _text_only(content)
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or "",
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = _text_only(_chat_content(output, index))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id", ""),
                    "content": output if isinstance(output, str) else str(output or ""),
                }
            )
        elif kind == "reasoning":
            continue  # a model's private reasoning: no chat equivalent, and not needed
        else:
            raise TranslationError(
                f"input[{index}]: unsupported item type {kind!r} on this model's platform.", f"input[{index}]"
            )
    # an assistant message that only carried text before its tool calls
    for message in messages:
        if message.get("tool_calls") and message.get("content") == "":
            message["content"] = None
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise TranslationError(
                f"tools[{index}]: the tool type {kind!r} is not available on "
                "this model's platform (only function tools are).",
                "tools",
            )
        function = {
            "name": tool.get("name", ""),
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    if choice in (None, "auto", "none", "required"):
        return choice
    raise TranslationError(
        "tool_choice: only auto, none, required and function choices are available on this model's platform.",
        "tool_choice",
    )


def response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise TranslationError(f"text.format.type {fmt['type']!r} is not supported.", "text.format")


def chat_parts(
    body: dict[str, Any], history: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(messages, params, extra, response_format) of the chat request for this Responses
    request; ``history`` is the rebuilt conversation of ``previous_response_id``."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += items_to_messages([*history, *input_items(body.get("input"))])
    params: dict[str, Any] = {}
    if body.get("max_output_tokens") is not None:
        params["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            params[key] = body[key]
    extra: dict[str, Any] = {}
    if body.get("tools"):
        extra["tools"] = _tools(body["tools"])
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None and extra.get("tools"):
        extra["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None and extra.get("tools"):
        extra["parallel_tool_calls"] = body["parallel_tool_calls"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        extra["reasoning_effort"] = reasoning["effort"]
    if isinstance(body.get("user"), str):
        extra["user"] = body["user"]
    return messages, params, extra, response_format(body.get("text"))


# --- answer -----------------------------------------------------------------------------


def usage_document(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_creation_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def message_item(text: str, item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id or new_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(
    call_id: str, name: str, arguments: str, item_id: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id or new_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_object(
    body: dict[str, Any],
    *,
    response_id: str,
    model: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    incomplete: str | None = None,
) -> dict[str, Any]:
    """A ``response`` object; the request's own settings are echoed as OpenAI does."""
    text = body["text"] if isinstance(body.get("text"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "temperature": body.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage_document(usage) if usage is not None else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def response_document(
    body: dict[str, Any], chat: dict[str, Any], usage: Usage, *, response_id: str, model: str
) -> dict[str, Any]:
    """A chat completion (OpenAI shape) as a ``response`` object."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(content))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append(
            function_call_item(call.get("id") or new_id("call"), fn.get("name", ""), fn.get("arguments") or "{}")
        )
    if not output:
        output.append(message_item(""))
    incomplete = "max_output_tokens" if choice.get("finish_reason") == "length" else None
    return response_object(
        body,
        response_id=response_id,
        model=model,
        created=int(time.time()),
        status="incomplete" if incomplete else "completed",
        output=output,
        usage=usage,
        incomplete=incomplete,
    )


# --- streams ----------------------------------------------------------------------------


@dataclass
class _Item:
    kind: str  # message | function_call
    item_id: str
    output_index: int
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    done: bool = False


@dataclass
class ResponsesStream:
    """Turns chat completion chunks into the Responses API's typed stream events."""

    body: dict[str, Any]
    response_id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    sequence: int = 0
    items: list[_Item] = field(default_factory=list)
    calls: dict[int, _Item] = field(default_factory=dict)  # chat tool_calls index -> item
    text_item: _Item | None = None
    finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(
        self, status: str, output: list[dict[str, Any]], usage: Usage | None, incomplete: str | None = None
    ) -> dict[str, Any]:
        return response_object(
            self.body,
            response_id=self.response_id,
            model=self.model,
            created=self.created,
            status=status,
            output=output,
            usage=usage,
            incomplete=incomplete,
        )

    def start(self) -> list[bytes]:
        response = self._response("in_progress", [], None)
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        """Events for one chat completion chunk (parsed)."""
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                out += self._text(text)
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self.text_item
        if item is None or item.done:
            item = self.text_item = _Item("message", new_id("msg"), len(self.items))
            self.items.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    output_index=item.output_index,
                    item={**message_item("", item.item_id, "in_progress"), "content": []},
                )
            )
            out.append(
                self._event("response.content_part.added", **self._where(item), part=message_item("")["content"][0])
            )
        item.parts.append(text)
        out.append(self._event("response.output_text.delta", **self._where(item), delta=text, logprobs=[]))
        return out

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        fn = call.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            if self.text_item is not None and not self.text_item.done:
                out += self._close(self.text_item)
            item = _Item(
                "function_call",
                new_id("fc"),
                len(self.items),
                call_id=call.get("id") or new_id("call"),
                name=fn.get("name") or "",
            )
            self.calls[index] = item
            self.items.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    output_index=item.output_index,
                    item=function_call_item(item.call_id, item.name, "", item.item_id, "in_progress"),
                )
            )
        arguments = fn.get("arguments")
        if arguments:
            item.parts.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.item_id,
                    output_index=item.output_index,
                    delta=arguments,
                )
            )
        return out

    @staticmethod
    def _where(item: _Item) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.output_index, "content_index": 0}

    def _document(self, item: _Item) -> dict[str, Any]:
        text = "".join(item.parts)
        if item.kind == "message":
            return message_item(text, item.item_id)
        return function_call_item(item.call_id, item.name, text or "{}", item.item_id)

    def _close(self, item: _Item) -> list[bytes]:
        item.done = True
        doc = self._document(item)
        if item.kind == "message":
            out = [
                self._event(
                    "response.output_text.done", **self._where(item), text=doc["content"][0]["text"], logprobs=[]
                ),
                self._event("response.content_part.done", **self._where(item), part=doc["content"][0]),
            ]
        else:
            out = [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.item_id,
                    output_index=item.output_index,
                    arguments=doc["arguments"],
                )
            ]
        out.append(self._event("response.output_item.done", output_index=item.output_index, item=doc))
        return out

    def output(self) -> list[dict[str, Any]]:
        return [self._document(item) for item in self.items]

    def finish(self, usage: Usage) -> tuple[list[bytes], dict[str, Any]]:
        """The closing events and the final response object."""
        out: list[bytes] = []
        if not self.items:  # an empty answer is still one (empty) message
            item = self.text_item = _Item("message", new_id("msg"), 0)
            self.items.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    output_index=0,
                    item={**message_item("", item.item_id, "in_progress"), "content": []},
                )
            )
            out.append(
                self._event("response.content_part.added", **self._where(item), part=message_item("")["content"][0])
            )
        for item in self.items:
            if not item.done:
                out += self._close(item)
        incomplete = "max_output_tokens" if self.finish_reason == "length" else None
        response = self._response("incomplete" if incomplete else "completed", self.output(), usage, incomplete)
        kind = "response.incomplete" if incomplete else "response.completed"
        out.append(self._event(kind, response=response))
        return out, response

    def failed(self, code: str, message: str) -> bytes:
        """The ``error`` event for a failure after the stream started."""
        return self._event("error", code=code, message=message, param=None)
