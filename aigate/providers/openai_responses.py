"""The OpenAI Responses API spoken natively (``POST {base}/responses``).

``openai`` platforms speak it; ``openai_compatible`` ones when their options say
``responses: native`` (the others get it by translation to chat completions:
``aigate.providers.responses_chat``). The body goes upstream as the caller built it; the
answer and each stream event come back parsed, with usage read from the ``response``
object (``input_tokens`` includes cached tokens, ``output_tokens`` reasoning tokens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .base import JsonResult, Platform, StreamEvent, UpstreamError, Usage
from .http import error_message, open_stream, protocol_error, redact, request_json, stream_document
from .openai import endpoint


def speaks_natively(platform: Platform) -> bool:
    if platform.type == "openai":
        return True
    return platform.type == "openai_compatible" and platform.options.get("responses") == "native"


def parse_usage(u: dict[str, Any] | None) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(
        input_tokens=u.get("input_tokens") or 0,
        output_tokens=u.get("output_tokens") or 0,
        cached_tokens=(u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


async def create(session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]) -> JsonResult:
    url, headers = endpoint(platform, "/responses", body.get("model"))
    data, raw = await request_json(session, platform, "POST", url, headers=headers, body=body)
    if not isinstance(data, dict) or data.get("object") != "response":
        raise protocol_error(f"upstream {platform.id} sent no response object", raw)
    usage = parse_usage(data.get("usage")) or Usage(estimated=True)
    return JsonResult(data=data, raw=raw, usage=usage, upstream_id=data.get("id") or "")


async def stream(
    session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]
) -> AsyncIterator[StreamEvent]:
    """Each upstream event as a StreamEvent whose ``openai_chunk`` is the event's JSON;
    text deltas in ``delta``; the closing ``response.completed`` (or ``.incomplete``)
    carries usage. An ``error`` or ``response.failed`` event raises UpstreamError."""
    url, headers = endpoint(platform, "/responses", body.get("model"))
    frames = await open_stream(session, platform, url, headers=headers, body=body)
    try:
        finished = False
        async for event, data in frames:
            doc = stream_document(data)
            kind = doc.get("type") or event
            if kind in ("error", "response.failed"):
                message = redact(error_message(data), platform) or "the upstream response failed"
                raise UpstreamError(message, status=None, retryable=True, body=data)
            delta = doc.get("delta") if kind == "response.output_text.delta" else ""
            usage = None
            if kind in ("response.completed", "response.incomplete"):
                usage = parse_usage((doc.get("response") or {}).get("usage")) or Usage(estimated=True)
                finished = True
            yield StreamEvent(delta=delta if isinstance(delta, str) else "", usage=usage, openai_chunk=data)
            if finished:
                break
        if not finished:
            raise protocol_error(f"stream from {platform.id} ended before response.completed")
    finally:
        frames.release()
