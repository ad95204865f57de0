"""Anthropic Messages API (``POST /v1/messages``).

Requests arrive OpenAI-shaped and are converted:

* every system (or developer) message goes to the top-level ``system`` string, joined
  with blank lines;
* content parts: text -> text block; ``image_url`` data URLs -> base64 image source,
  http(s) URLs -> url image source; other parts pass through as native blocks;
* consecutive messages with the same role are merged (Anthropic requires alternation);
* OpenAI tools / tool_choice / tool_calls / ``role: tool`` messages become Anthropic
  tools / tool_choice / ``tool_use`` blocks / user ``tool_result`` blocks;
* ``max_tokens`` is required by Anthropic: ``max_tokens`` or ``max_completion_tokens``,
  else 4096; ``stop`` -> ``stop_sequences``; temperature is capped at 1 (Anthropic's max);
  other OpenAI sampling params (penalties, seed, n, ...) have no equivalent and are dropped;
* JSON mode by a forced tool call, so the answer is valid JSON whatever the model says:
  ``response_format`` json_schema (and json_object, schema ``{"type": "object"}``) adds
  the tool ``json_response`` whose ``input_schema`` is the schema and forces it
  (``tool_choice: {"type": "tool"}``; with the caller's own tools, ``any``, so the model
  may call theirs instead); its input comes back as the message content, finish reason
  ``stop``. Anthropic refuses a forced tool with extended thinking (``thinking``), so
  json_schema with thinking is a 400 naming ``response_format``; json_object with
  thinking falls back to an instruction in the system prompt.
* ``thinking`` (Anthropic's own field) is passed through.

Usage: Anthropic's ``input_tokens`` excludes prompt-cache reads and writes. We report
``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``
so it is the whole prompt, like OpenAI's prompt_tokens; ``cached_tokens`` =
``cache_read_input_tokens`` and ``cache_creation_tokens`` =
``cache_creation_input_tokens``. In streams ``message_start`` carries the input counts
and ``message_delta`` the (cumulative) output count; later values win.

Answers are rebuilt as OpenAI ``chat.completion`` documents and chunks; the stream ends
with a usage-only chunk (``choices: []``) after ``message_stop``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from . import openai_wire as oa
from .base import (
    ChatRequest,
    ChatResult,
    JsonResult,
    Platform,
    StreamEvent,
    UpstreamError,
    Usage,
)
from .http import (
    JSON_HEADERS,
    error_message,
    estimate_usage,
    merged_headers,
    open_stream,
    protocol_error,
    redact,
    request_json,
    stream_document,
)

API_VERSION = "2023-06-01"
JSON_TOOL = "json_response"  # the forced tool that carries a JSON-mode answer
DEFAULT_MAX_TOKENS = 4096
JSON_INSTRUCTION = "Respond with a single valid JSON object only, with no text before or after it."

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error types (in-stream ``error`` events) -> (HTTP status, retryable)
ERROR_TYPES = {
    "overloaded_error": (529, True),
    "api_error": (500, True),
    "rate_limit_error": (429, True),
    "timeout_error": (504, True),
    "invalid_request_error": (400, False),
    "authentication_error": (401, False),
    "permission_error": (403, False),
    "not_found_error": (404, False),
    "request_too_large": (413, False),
}


# --- addressing ------------------------------------------------------------------------


def endpoint(platform: Platform) -> tuple[str, dict[str, str]]:
    base = platform.base_url.rstrip("/")
    url = base + "/messages" if base.endswith("/v1") else base + "/v1/messages"
    headers = dict(JSON_HEADERS)
    headers["anthropic-version"] = platform.options.get("anthropic_version") or API_VERSION
    if platform.api_key:
        headers["x-api-key"] = platform.api_key
    return url, merged_headers(headers, platform)


# --- request conversion -------------------------------------------------------------------


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, dict) else (image or "")
    inline = oa.parse_data_url(url)
    if inline:
        mime, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content -> a list of Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            out.append(_image_block(part))
        else:  # already an Anthropic block (document, ...): pass through
            out.append(part)
    return out


def _content(content: Any) -> str | list[dict[str, Any]]:
    """Strings stay strings; part lists become blocks."""
    return content if isinstance(content, str) else _blocks(content)


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = {}
    return {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    return {
        "type": "tool_result",
        "tool_use_id": msg.get("tool_call_id", ""),
        "content": content if isinstance(content, str) else _blocks(content),
    }


def _append(out: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a message, merging it into the previous one when the role repeats."""
    if out and out[-1]["role"] == role:
        prev = out[-1]
        prev["content"] = _blocks(prev["content"]) + _blocks(content)
    else:
        out.append({"role": role, "content": content})


def convert_messages(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI messages -> (system texts, Anthropic messages)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = oa.text_of(content)
            if text:
                system.append(text)
        elif role == "tool":
            _append(out, "user", [_tool_result(msg)])
        elif role == "assistant":
            calls = msg.get("tool_calls")
            if calls:
                _append(out, "assistant", _blocks(content) + [_tool_use(c) for c in calls])
            else:
                _append(out, "assistant", _content(content))
        else:
            _append(out, "user", _content(content))
    return system, out


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        fn = tool.get("function") or tool
        converted = {
            "name": fn.get("name", ""),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            converted["description"] = fn["description"]
        out.append(converted)
    return out


def convert_tool_choice(choice: Any, parallel: Any = None) -> dict[str, Any] | None:
    if choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name", "")
        out = {"type": "tool", "name": name}
    elif parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(req: ChatRequest) -> dict[str, Any] | None:
    thinking = req.extra.get("thinking", req.params.get("thinking"))
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        return thinking
    return None


def _json_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema a JSON-mode answer must follow, or None when no JSON is asked for."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) and schema else {"type": "object"}
    if kind == "json_object":
        return {"type": "object"}
    return None


def refuse_json_with_thinking() -> UpstreamError:
    """json_schema + thinking: Anthropic cannot force a tool while thinking. An OpenAI-shaped
    400 body, so the relay names the ``param`` and the App API reports invalid_parameter."""
    message = (
        "response_format: json_schema cannot be combined with extended thinking on an "
        "Anthropic platform (the schema is enforced by a forced tool call, which Anthropic "
        "does not allow while thinking); drop one of them."
    )
    body = orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": "response_format", "code": None}}
    )
    return UpstreamError(message, status=400, retryable=False, body=body)


def _add_json_tool(body: dict[str, Any], schema: dict[str, Any], extra: dict[str, Any]) -> None:
    tool = {
        "name": JSON_TOOL,
        "description": "Give the answer as this tool's input: a JSON value that follows its schema.",
        "input_schema": schema,
    }
    user_tools = body.get("tools") or []
    body["tools"] = [*user_tools, tool]
    user_choice = body.get("tool_choice") or {}
    if user_tools and user_choice.get("type") in ("tool", "any"):
        return  # the caller forces one of their tools: keep that
    if user_tools and user_choice.get("type") != "none":
        body["tool_choice"] = {"type": "any"}
    else:
        body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
    if extra.get("parallel_tool_calls") is False:
        body["tool_choice"]["disable_parallel_tool_use"] = True


def build_body(req: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The Anthropic request body; raises UpstreamError (400) for json_schema + thinking."""
    system, messages = convert_messages(req.messages)
    params, extra = req.params, req.extra
    schema = _json_schema(req.response_format)
    thinking = _thinking(req)
    if schema is not None and thinking is not None:
        if req.response_format and req.response_format.get("type") == "json_schema":
            raise refuse_json_with_thinking()
        system.append(JSON_INSTRUCTION)
        schema = None
    max_tokens = (
        params.get("max_tokens")
        or params.get("max_completion_tokens")
        or extra.get("max_tokens")
        or extra.get("max_completion_tokens")
        or DEFAULT_MAX_TOKENS
    )
    body: dict[str, Any] = {"model": req.model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = "\n\n".join(system)
    temperature = params.get("temperature")
    if temperature is not None:
        body["temperature"] = min(temperature, 1.0)  # OpenAI allows up to 2
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    if params.get("top_k") is not None:
        body["top_k"] = params["top_k"]
    stop = params.get("stop", extra.get("stop"))
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = extra.get("tools")
    if tools:
        body["tools"] = convert_tools(tools)
        choice = convert_tool_choice(extra.get("tool_choice"), extra.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    if schema is not None:
        _add_json_tool(body, schema, extra)
    if thinking is not None:
        body["thinking"] = thinking
    if stream:
        body["stream"] = True
    return body


# --- response conversion ------------------------------------------------------------------


def parse_usage(u: dict[str, Any]) -> Usage:
    cache_read = u.get("cache_read_input_tokens") or 0
    cache_write = u.get("cache_creation_input_tokens") or 0
    usage = Usage(
        input_tokens=(u.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=u.get("output_tokens") or 0,
        cached_tokens=cache_read,
        cache_creation_tokens=cache_write,
    )
    server_tools = u.get("server_tool_use")
    if server_tools:
        usage.web_search_count = server_tools.get("web_search_requests") or 0
    return usage


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {
            "name": block.get("name", ""),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


def to_result(data: dict[str, Any], raw: bytes, req: ChatRequest) -> ChatResult:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use" and block.get("name") == JSON_TOOL and _json_mode(req):
            json_answer = orjson.dumps(block.get("input")).decode()
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
    # a JSON-mode answer is the forced tool's input; the model's prose around it is dropped
    content = json_answer if json_answer is not None else "".join(texts)
    finish = FINISH_REASONS.get(data.get("stop_reason") or "", "stop")
    if json_answer is not None and not tool_calls and finish == "tool_calls":
        finish = "stop"
    u = data.get("usage")
    return oa.translated_result(
        req,
        raw,
        upstream_id=data.get("id") or "",
        model=data.get("model") or req.model,
        content=content,
        tool_calls=tool_calls,
        finish=finish,
        usage=parse_usage(u) if u else None,
    )


def _json_mode(req: ChatRequest) -> bool:
    """True when the request asked for JSON by the forced ``json_response`` tool."""
    return _json_schema(req.response_format) is not None and _thinking(req) is None


def stream_error(data: bytes, platform: Platform) -> UpstreamError:
    """An ``event: error`` frame, e.g. ``overloaded_error`` in the middle of a stream."""
    try:
        kind = (orjson.loads(data).get("error") or {}).get("type", "")
    except (orjson.JSONDecodeError, AttributeError):
        kind = ""
    status, retryable = ERROR_TYPES.get(kind, (None, True))
    message = redact(error_message(data), platform) or "upstream reported an error mid-stream"
    return UpstreamError(message, status=status, retryable=retryable, body=data, kind="http")


class AnthropicChat:
    """``ChatProvider`` for the Anthropic Messages API."""

    async def chat(self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest) -> ChatResult:
        url, headers = endpoint(platform)
        data, raw = await request_json(
            session, platform, "POST", url, headers=headers, body=build_body(req, stream=False)
        )
        if not isinstance(data, dict) or "content" not in data:
            raise protocol_error(f"upstream {platform.id} sent no message", raw)
        return to_result(data, raw, req)

    async def chat_stream(
        self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest
    ) -> AsyncIterator[StreamEvent]:
        url, headers = endpoint(platform)
        frames = await open_stream(session, platform, url, headers=headers, body=build_body(req, stream=True))
        try:
            msg_id = ""
            model = req.model
            created = int(time.time())
            want = req.openai_chunks

            def chunk_of(delta: dict[str, Any], finish: str | None = None) -> bytes | None:
                return oa.chunk_bytes(msg_id, model, created, delta, finish) if want else None

            raw_usage: dict[str, Any] = {}
            tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
            json_mode = _json_mode(req)
            json_blocks: set[int] = set()  # blocks of the json_response tool: content
            reply_parts: list[str] = []
            stopped = False
            async for event, data in frames:
                if event == "ping":
                    continue
                if event == "error":
                    raise stream_error(data, platform)
                doc = stream_document(data)
                kind = doc.get("type") or event

                if kind == "content_block_delta":
                    delta = doc.get("delta") or {}
                    delta_type = delta.get("type")
                    if delta_type == "text_delta":
                        text = delta.get("text") or ""
                        reply_parts.append(text)
                        chunk = chunk_of({"content": text})
                        yield StreamEvent(delta=text, upstream_id=msg_id, openai_chunk=chunk)
                    elif delta_type == "input_json_delta" and doc.get("index") in json_blocks:
                        text = delta.get("partial_json") or ""
                        reply_parts.append(text)
                        chunk = chunk_of({"content": text})
                        yield StreamEvent(delta=text, upstream_id=msg_id, openai_chunk=chunk)
                    elif delta_type == "input_json_delta":
                        index = tool_index.get(doc.get("index", -1))
                        if index is None:
                            continue
                        part = delta.get("partial_json") or ""
                        reply_parts.append(part)
                        call: dict[str, Any] = {"index": index, "function": {"arguments": part}}
                        chunk = chunk_of({"tool_calls": [call]})
                        yield StreamEvent(upstream_id=msg_id, openai_chunk=chunk)
                    # thinking / signature deltas have no chat.completion.chunk equivalent
                elif kind == "message_start":
                    message = doc.get("message") or {}
                    msg_id = message.get("id") or ""
                    model = message.get("model") or model
                    _merge_usage(raw_usage, message.get("usage"))
                    delta = {"role": "assistant", "content": "", "refusal": None}
                    chunk = chunk_of(delta)
                    yield StreamEvent(upstream_id=msg_id, openai_chunk=chunk)
                elif kind == "content_block_start":
                    block = doc.get("content_block") or {}
                    if block.get("type") == "tool_use" and json_mode and (block.get("name") == JSON_TOOL):
                        json_blocks.add(doc.get("index", -1))
                    elif block.get("type") == "tool_use":
                        index = tool_index[doc.get("index", -1)] = len(tool_index)
                        call = _tool_call({**block, "input": {}})
                        call["index"] = index
                        call["function"]["arguments"] = ""
                        chunk = chunk_of({"tool_calls": [call]})
                        yield StreamEvent(upstream_id=msg_id, openai_chunk=chunk)
                    elif block.get("type") == "text" and block.get("text"):
                        text = block["text"]
                        reply_parts.append(text)
                        chunk = chunk_of({"content": text})
                        yield StreamEvent(delta=text, upstream_id=msg_id, openai_chunk=chunk)
                elif kind == "message_delta":
                    stop_reason = (doc.get("delta") or {}).get("stop_reason") or ""
                    finish = FINISH_REASONS.get(stop_reason, "stop")
                    if json_blocks and not tool_index and finish == "tool_calls":
                        finish = "stop"  # the JSON answer, not a call for the client
                    _merge_usage(raw_usage, doc.get("usage"))
                    chunk = chunk_of({}, finish)
                    yield StreamEvent(finish_reason=finish, upstream_id=msg_id, openai_chunk=chunk)
                elif kind == "message_stop":
                    stopped = True
                    break
                elif kind == "error":
                    raise stream_error(data, platform)
            if not stopped:
                raise protocol_error(f"stream from {platform.id} ended before message_stop")
            if raw_usage:
                usage = parse_usage(raw_usage)
            else:
                usage = estimate_usage(req.messages, "".join(reply_parts), req.model)
            chunk = oa.usage_chunk_bytes(msg_id, model, created, usage) if want else None
            yield StreamEvent(usage=usage, upstream_id=msg_id, openai_chunk=chunk)
        finally:
            frames.release()


def _merge_usage(into: dict[str, Any], u: dict[str, Any] | None) -> None:
    """Stream usage counts are cumulative: a later non-null value replaces the earlier."""
    if u:
        for key, value in u.items():
            if value is not None:
                into[key] = value


# --- the Messages API passed through (the relay's /v1/messages on Anthropic platforms) ----


def _passthrough_endpoint(platform: Platform, beta: str, path: str = "") -> tuple[str, dict[str, str]]:
    """The Messages URL; the caller's ``anthropic-beta`` features travel with its body."""
    url, headers = endpoint(platform)
    if beta:
        headers["anthropic-beta"] = beta
    return url + path, headers


async def passthrough(
    session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any], beta: str = ""
) -> JsonResult:
    """``POST /v1/messages`` with the caller's body as it is (model already mapped)."""
    url, headers = _passthrough_endpoint(platform, beta)
    data, raw = await request_json(session, platform, "POST", url, headers=headers, body=body)
    if not isinstance(data, dict) or data.get("type") != "message":
        raise protocol_error(f"upstream {platform.id} sent no message", raw)
    u = data.get("usage")
    usage = parse_usage(u) if isinstance(u, dict) else Usage(estimated=True)
    return JsonResult(data=data, raw=raw, usage=usage, upstream_id=data.get("id") or "")


async def passthrough_stream(
    session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any], beta: str = ""
) -> AsyncIterator[StreamEvent]:
    """The upstream's events untouched: each StreamEvent's ``openai_chunk`` holds the event's
    JSON data as received (Anthropic's, despite the field's name); text deltas in ``delta``;
    the usage (cumulative, read from message_start and message_delta) on message_stop."""
    url, headers = _passthrough_endpoint(platform, beta)
    frames = await open_stream(session, platform, url, headers=headers, body=body)
    try:
        raw_usage: dict[str, Any] = {}
        stopped = False
        async for event, data in frames:
            if event == "error":
                raise stream_error(data, platform)
            doc = stream_document(data)
            kind = doc.get("type") or event
            delta = ""
            if kind == "message_start":
                _merge_usage(raw_usage, (doc.get("message") or {}).get("usage"))
            elif kind == "message_delta":
                _merge_usage(raw_usage, doc.get("usage"))
            elif kind == "content_block_delta":
                text = (doc.get("delta") or {}).get("text")
                delta = text if isinstance(text, str) else ""
            usage = None
            if kind == "message_stop":
                stopped = True
                usage = parse_usage(raw_usage) if raw_usage else Usage(estimated=True)
            yield StreamEvent(delta=delta, usage=usage, openai_chunk=data)
            if stopped:
                break
        if not stopped:
            raise protocol_error(f"stream from {platform.id} ended before message_stop")
    finally:
        frames.release()


async def count_tokens(
    session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any], beta: str = ""
) -> JsonResult:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``."""
    url, headers = _passthrough_endpoint(platform, beta, "/count_tokens")
    data, raw = await request_json(session, platform, "POST", url, headers=headers, body=body)
    if not isinstance(data, dict) or not isinstance(data.get("input_tokens"), int):
        raise protocol_error(f"upstream {platform.id} sent no token count", raw)
    return JsonResult(data=data, raw=raw, usage=Usage(input_tokens=data["input_tokens"]))
