"""OpenAI wire format: ``openai``, ``openai_compatible`` and ``azure_openai`` platforms.

The request the engine hands over is already OpenAI-shaped, so chat bodies go upstream
nearly as they are and streamed chunks come back untouched. The documents the other
adapters build to speak OpenAI to the relay (``completion_document``, ``chunk_bytes``,
...) live in ``openai_wire``.

Azure differs only in addressing: ``{base}/openai/deployments/{deployment}/...`` with
``?api-version=`` and an ``api-key`` header. The deployment is the upstream model name
unless ``options.deployments`` maps it to another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from .base import (
    BinaryResult,
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
    StreamFrames,
    error_message,
    estimate_usage,
    merged_headers,
    open_stream,
    protocol_error,
    redact,
    request_bytes,
    request_json,
    stream_document,
)
from .openai_wire import ChunkLayout, ReplyText, parse_usage, passes_whole, plain_delta, reply_text
from .tokens import count_text

AZURE_DEFAULT_API_VERSION = "2024-10-21"

# --- addressing ------------------------------------------------------------------------


def azure_deployment(platform: Platform, model: str) -> str:
    return (platform.options.get("deployments") or {}).get(model, model)


def endpoint(platform: Platform, path: str, model: str | None = None) -> tuple[str, dict[str, str]]:
    """URL and headers for ``path`` (e.g. ``/chat/completions``) on this platform."""
    base = platform.base_url.rstrip("/")
    headers = dict(JSON_HEADERS)
    if platform.type == "azure_openai":
        version = platform.options.get("api_version") or AZURE_DEFAULT_API_VERSION
        if model:
            deployment = quote(azure_deployment(platform, model), safe="")
            url = f"{base}/openai/deployments/{deployment}{path}?api-version={version}"
        else:
            url = f"{base}/openai{path}?api-version={version}"
        if platform.api_key:
            headers["api-key"] = platform.api_key
    else:
        url = base + path
        if platform.api_key:  # local servers (Ollama, vLLM) often run without a key
            headers["Authorization"] = f"Bearer {platform.api_key}"
    return url, merged_headers(headers, platform)


# --- chat ----------------------------------------------------------------------------


def chat_body(req: ChatRequest, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "messages": req.messages, **req.params}
    if req.response_format:
        body["response_format"] = req.response_format
    if req.extra:
        body.update(req.extra)
    if stream:
        body["stream"] = True
        # usage is billed from the provider's numbers, so always ask for them
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _stream_error(data: bytes, platform: Platform) -> UpstreamError:
    message = redact(error_message(data), platform) or "upstream reported an error mid-stream"
    return UpstreamError(message, retryable=True, body=data, kind="http")


def _parsed_event(data: bytes, platform: Platform, reply: ReplyText) -> StreamEvent:
    """A chunk that is not plain text, parsed in full; its text and tool-call arguments
    go to ``reply``. (A function of its own so the parsed document is not kept in the
    stream's frame.)"""
    chunk = stream_document(data)
    choices = chunk.get("choices")
    if not choices and "error" in chunk:
        raise _stream_error(data, platform)
    text = ""
    finish = None
    if choices:
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            text = delta.get("content") or ""
            if text and isinstance(text, str):
                reply.add_text(text)
            if "tool_calls" in delta:  # their arguments count in the usage estimate
                reply.add_tool_text(reply_text({"tool_calls": delta["tool_calls"]}))
        finish = choice.get("finish_reason")
    u = chunk.get("usage")
    return StreamEvent(
        delta=text,
        usage=parse_usage(u) if u else None,
        finish_reason=finish,
        upstream_id=chunk.get("id") or "",
        openai_chunk=data,
    )


async def _open_chat_stream(session: aiohttp.ClientSession, platform: Platform, req: ChatRequest) -> StreamFrames:
    """A function of its own so the request's URL and headers are not kept in the
    stream's frame for as long as it is open."""
    url, headers = endpoint(platform, "/chat/completions", req.model)
    return await open_stream(session, platform, url, headers=headers, body=chat_body(req, stream=True))


class OpenAIChat:
    """``ChatProvider`` for the OpenAI wire format (OpenAI, Azure, compatible servers)."""

    async def chat(self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest) -> ChatResult:
        url, headers = endpoint(platform, "/chat/completions", req.model)
        data, raw = await request_json(
            session, platform, "POST", url, headers=headers, body=chat_body(req, stream=False)
        )
        if not isinstance(data, dict) or not data.get("choices"):
            raise protocol_error(f"upstream {platform.id} sent no choices", raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content")
        if not isinstance(content, str):
            content = ""
        u = data.get("usage")
        usage = parse_usage(u) if u else estimate_usage(req.messages, reply_text(message), req.model)
        return ChatResult(
            content=content,
            usage=usage,
            raw=raw,
            upstream_id=data.get("id") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            openai=data,
        )

    async def chat_stream(
        self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest
    ) -> AsyncIterator[StreamEvent]:
        frames = await _open_chat_stream(session, platform, req)
        try:
            done = finished = has_usage = False
            # the reply so far, on every event (``StreamEvent.reply``): the consumer's
            # copy, and the estimate's when the upstream reports no usage
            reply = ReplyText()
            upstream_id: str | None = None  # from the first chunk, parsed in full
            layout: ChunkLayout | None = None  # of the content chunks, from the first plain one
            while True:
                if upstream_id is not None and frames.between_reads and (layout is not None or req.sse_passthrough):
                    read = await frames.read()
                    while True:  # the usual reads, one after another, taken whole
                        text = layout.text(read) if layout is not None else None
                        if text is not None:
                            reply.add_text(text)
                            if req.sse_passthrough:  # sent on as it came
                                yield StreamEvent(upstream_id=upstream_id, sse=read, reply=reply)
                            else:
                                chunk = read[6:-2] if req.openai_chunks else None
                                yield StreamEvent(delta=text, upstream_id=upstream_id, openai_chunk=chunk, reply=reply)
                        elif req.sse_passthrough and passes_whole(read):  # another layout, or several chunks
                            layout = layout or ChunkLayout.of_read(read)
                            reply.add_read(read)
                            yield StreamEvent(upstream_id=upstream_id, sse=read, reply=reply)
                        else:
                            break  # decoded below, event by event
                        read = await frames.read()
                    frames.take(read)
                try:
                    event, data = await frames.__anext__()
                except StopAsyncIteration:
                    break
                if data == b"[DONE]":
                    done = True
                    break
                if not data:
                    continue
                if event == "error":
                    raise _stream_error(data, platform)
                plain = None if upstream_id is None else plain_delta(data)
                if plain is not None:  # the common case: text only, taken without a parse
                    if layout is None and not frames.pending:
                        layout = ChunkLayout.of_event(data)
                    if plain:
                        reply.add_text(plain)
                    yield StreamEvent(
                        delta=plain,
                        upstream_id=upstream_id or "",
                        openai_chunk=data,
                        more=frames.pending,
                        reply=reply,
                    )
                    del data, plain  # not kept while the next read is awaited
                    continue
                parsed = _parsed_event(data, platform, reply)
                parsed.more, parsed.reply = frames.pending, reply
                finished = finished or bool(parsed.finish_reason)
                has_usage = has_usage or parsed.usage is not None
                upstream_id = parsed.upstream_id
                yield parsed
                del parsed  # the first chunk is not kept while the stream runs
            if not (done or finished):
                raise protocol_error(f"stream from {platform.id} ended before its final frame")
            if not has_usage:
                yield StreamEvent(usage=estimate_usage(req.messages, reply.generated(), req.model), reply=reply)
        finally:
            frames.release()


# --- other endpoints -------------------------------------------------------------------


async def post_json(session: aiohttp.ClientSession, platform: Platform, path: str, body: dict[str, Any]) -> JsonResult:
    """POST ``body`` to ``path`` (relative to the API root, e.g. ``/moderations``)."""
    url, headers = endpoint(platform, path, body.get("model"))
    data, raw = await request_json(session, platform, "POST", url, headers=headers, body=body)
    usage = Usage()
    upstream_id = ""
    if isinstance(data, dict):
        u = data.get("usage")
        if isinstance(u, dict):
            usage = parse_usage(u)
        upstream_id = data.get("id") or ""
        if not isinstance(upstream_id, str):
            upstream_id = str(upstream_id)
    return JsonResult(data=data, raw=raw, usage=usage, upstream_id=upstream_id)


async def images(session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]) -> JsonResult:
    """``POST /images/generations``; usage only when the model reports it (gpt-image)."""
    return await post_json(session, platform, "/images/generations", body)


def _input_tokens(value: Any, model: str) -> int:
    """Tokens of an embeddings/speech ``input``: text counted; token-id lists are their length."""
    if isinstance(value, str):
        return count_text(value, model)
    if isinstance(value, list):
        return sum(_input_tokens(v, model) if isinstance(v, (str, list)) else 1 for v in value)
    return 0


async def embeddings(session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]) -> JsonResult:
    """``POST /embeddings``; usage from the response, estimated from the input if absent."""
    result = await post_json(session, platform, "/embeddings", body)
    data = result.data
    if not (isinstance(data, dict) and data.get("usage")):
        tokens = _input_tokens(body.get("input"), str(body.get("model") or ""))
        result.usage = Usage(input_tokens=tokens, estimated=True)
    return result


async def speech(session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]) -> BinaryResult:
    """``POST /audio/speech``: audio bytes. Speech reports no usage, so the input is estimated."""
    url, headers = endpoint(platform, "/audio/speech", body.get("model"))
    content, content_type = await request_bytes(session, platform, url, headers=headers, body=body)
    usage = Usage(input_tokens=_input_tokens(body.get("input"), str(body.get("model") or "")), estimated=True)
    return BinaryResult(content=content, content_type=content_type, usage=usage)
