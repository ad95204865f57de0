"""Google Gemini API (``/v1beta/models/{model}:generateContent``).

Requests arrive OpenAI-shaped and are converted:

* system (or developer) messages -> ``systemInstruction`` (one text part, joined with
  blank lines); roles user -> ``user``, assistant -> ``model``;
* parts: text -> ``{text}``; ``image_url`` data URLs -> ``inlineData``; http(s) URLs ->
  ``fileData`` with the MIME type guessed from the extension (default image/jpeg);
* params -> ``generationConfig`` (temperature, maxOutputTokens, topP, topK,
  stopSequences, seed, penalties); json_object / json_schema -> ``responseMimeType:
  application/json`` (plus ``responseJsonSchema`` for a schema);
* OpenAI tools -> ``functionDeclarations``; tool_calls / ``role: tool`` messages ->
  ``functionCall`` / ``functionResponse`` parts.

Usage: promptTokenCount -> input_tokens; output_tokens = candidatesTokenCount +
thoughtsTokenCount (thinking is billed as output), thoughtsTokenCount ->
reasoning_tokens; cachedContentTokenCount -> cached_tokens. Streamed responses repeat a
cumulative ``usageMetadata``; the last one wins and is sent as a final usage-only
OpenAI chunk once the stream ends. A stream without any ``finishReason`` was cut short.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from . import openai_wire as oa
from .base import ChatRequest, ChatResult, Platform, StreamEvent, UpstreamError, Usage
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

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# OpenAI param -> generationConfig field
GENERATION_PARAMS = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


# --- addressing ------------------------------------------------------------------------


def endpoint(platform: Platform, model: str, *, stream: bool) -> tuple[str, dict[str, str]]:
    base = platform.base_url.rstrip("/")
    if not base.endswith("/v1beta"):
        base += "/v1beta"
    model = model.removeprefix("models/")
    if stream:
        url = f"{base}/models/{model}:streamGenerateContent?alt=sse"
    else:
        url = f"{base}/models/{model}:generateContent"
    headers = dict(JSON_HEADERS)
    if platform.api_key:
        headers["x-goog-api-key"] = platform.api_key
    return url, merged_headers(headers, platform)


# --- request conversion -------------------------------------------------------------------


def guess_mime(url: str) -> str:
    mime = mimetypes.guess_type(urlsplit(url).path)[0]
    return mime or "image/jpeg"


def _image_part(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, dict) else (image or "")
    inline = oa.parse_data_url(url)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    return {"fileData": {"mimeType": guess_mime(url), "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif kind == "image_url":
            out.append(_image_part(part))
    return out


def _function_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = {}
    return {"functionCall": {"name": fn.get("name", ""), "args": args}}


def _function_response(msg: dict[str, Any], name: str) -> dict[str, Any]:
    text = oa.text_of(msg.get("content"))
    try:
        response = orjson.loads(text)
    except orjson.JSONDecodeError:
        response = None
    if not isinstance(response, dict):  # Gemini wants an object
        response = {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def convert_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI messages -> (system texts, Gemini contents), same-role turns merged."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call id -> function name, for functionResponse
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            text = oa.text_of(msg.get("content"))
            if text:
                system.append(text)
            continue
        if role == "tool":
            name = call_names.get(msg.get("tool_call_id", ""), msg.get("name", ""))
            gemini_role, parts = "user", [_function_response(msg, name)]
        elif role == "assistant":
            gemini_role, parts = "model", _parts(msg.get("content"))
            for call in msg.get("tool_calls") or ():
                call_names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
                parts.append(_function_call(call))
        else:
            gemini_role, parts = "user", _parts(msg.get("content"))
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


def _tools(extra: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    tools = extra.get("tools")
    if not tools:
        return None, None
    declarations = []
    for tool in tools:
        fn = tool.get("function") or tool
        decl: dict[str, Any] = {"name": fn.get("name", "")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters"):
            decl["parameters"] = fn["parameters"]
        declarations.append(decl)
    choice = extra.get("tool_choice")
    config: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in TOOL_MODES:
        config = {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", "")
        config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return [{"functionDeclarations": declarations}], config


def generation_config(req: ChatRequest) -> dict[str, Any]:
    params = req.params
    config: dict[str, Any] = {}
    for name, field in GENERATION_PARAMS.items():
        value = params.get(name)
        if value is not None:
            config[field] = value
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = req.response_format
    if fmt and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    return config


def build_body(req: ChatRequest) -> dict[str, Any]:
    system, contents = convert_messages(req.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config = generation_config(req)
    if config:
        body["generationConfig"] = config
    tools, tool_config = _tools(req.extra)
    if tools:
        body["tools"] = tools
        if tool_config:
            body["toolConfig"] = tool_config
    return body


# --- response conversion ------------------------------------------------------------------


def parse_usage(u: dict[str, Any]) -> Usage:
    thoughts = u.get("thoughtsTokenCount") or 0
    return Usage(
        input_tokens=u.get("promptTokenCount") or 0,
        output_tokens=(u.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=u.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call.get("id") or f"call_{secrets.token_hex(8)}",
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }


def read_candidate(doc: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    """(text, tool calls, OpenAI finish reason or None) of the first candidate."""
    candidates = doc.get("candidates")
    if not candidates:
        blocked = (doc.get("promptFeedback") or {}).get("blockReason")
        return "", [], "content_filter" if blocked else None
    candidate = candidates[0]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part:
            if not part.get("thought"):  # thought summaries are not the answer
                texts.append(part["text"])
        elif "functionCall" in part:
            calls.append(_tool_call(part["functionCall"]))
    reason = candidate.get("finishReason")
    finish = None
    if reason:
        finish = "tool_calls" if calls else FINISH_REASONS.get(reason, "stop")
    return "".join(texts), calls, finish


def new_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def to_result(doc: dict[str, Any], raw: bytes, req: ChatRequest) -> ChatResult:
    content, calls, finish = read_candidate(doc)
    u = doc.get("usageMetadata")
    return oa.translated_result(
        req,
        raw,
        upstream_id=doc.get("responseId") or "",
        model=doc.get("modelVersion") or req.model,
        content=content,
        tool_calls=calls,
        finish=finish or "stop",
        usage=parse_usage(u) if u else None,
    )


def stream_error(doc: dict[str, Any], data: bytes, platform: Platform) -> UpstreamError:
    """An ``{"error": {code, message, status}}`` frame in the middle of a stream."""
    error = doc.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) else None
    retryable = status is None or status == 429 or status >= 500
    message = redact(error_message(data), platform) or "upstream reported an error mid-stream"
    return UpstreamError(message, status=status, retryable=retryable, body=data, kind="http")


class GeminiChat:
    """``ChatProvider`` for the Gemini API."""

    async def chat(self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest) -> ChatResult:
        url, headers = endpoint(platform, req.model, stream=False)
        data, raw = await request_json(session, platform, "POST", url, headers=headers, body=build_body(req))
        if not isinstance(data, dict):
            raise protocol_error(f"upstream {platform.id} sent no candidates", raw)
        return to_result(data, raw, req)

    async def chat_stream(
        self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest
    ) -> AsyncIterator[StreamEvent]:
        url, headers = endpoint(platform, req.model, stream=True)
        frames = await open_stream(session, platform, url, headers=headers, body=build_body(req))
        try:
            chunk_id = upstream_id = ""
            model = req.model
            created = int(time.time())
            raw_usage: dict[str, Any] | None = None
            finished = False
            reply_parts: list[str] = []
            tool_count = 0
            want = req.openai_chunks  # the App API stream reads no OpenAI chunks
            async for _event, data in frames:
                if not data:
                    continue
                doc = stream_document(data)
                if "error" in doc:
                    raise stream_error(doc, data, platform)
                first = not chunk_id
                if first:
                    upstream_id = doc.get("responseId") or ""
                    chunk_id = upstream_id or new_id()
                    model = doc.get("modelVersion") or model
                if doc.get("usageMetadata"):
                    raw_usage = doc["usageMetadata"]
                text, calls, finish = read_candidate(doc)
                delta: dict[str, Any] = {"role": "assistant", "refusal": None} if first else {}
                if text or first:
                    delta["content"] = text
                    reply_parts.append(text)
                if calls:
                    for call in calls:
                        call["index"] = tool_count
                        tool_count += 1
                        reply_parts.append(call["function"]["arguments"])
                    delta["tool_calls"] = calls
                if finish:
                    finished = True
                if delta or finish:
                    chunk = oa.chunk_bytes(chunk_id, model, created, delta, finish) if want else None
                    yield StreamEvent(
                        delta=text,
                        finish_reason=finish,
                        upstream_id=upstream_id,
                        openai_chunk=chunk,
                    )
            if not finished:
                raise protocol_error(f"stream from {platform.id} ended without a finishReason")
            if raw_usage:
                usage = parse_usage(raw_usage)
            else:
                usage = estimate_usage(req.messages, "".join(reply_parts), req.model)
            chunk = oa.usage_chunk_bytes(chunk_id, model, created, usage) if want else None
            yield StreamEvent(usage=usage, upstream_id=upstream_id, openai_chunk=chunk)
        finally:
            frames.release()
