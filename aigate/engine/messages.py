"""The Anthropic Messages API on the relay (SPEC §13): ``POST /v1/messages`` (and stream)
and ``POST /v1/messages/count_tokens``, one more flow on the shared call lifecycle with
the relay's routing, token limits, pricing and usage log.

Anthropic platforms get the caller's body as it is (the model mapped; the caller's
``anthropic-beta`` header forwarded, so beta features keep working) and answer with
their own bytes and events; every other chat platform gets the request translated to a
chat completion (``aigate.providers.messages_chat``) and its answer rebuilt as an
Anthropic message or event stream. Errors are ``RelayError``s here; the API edge
renders them in Anthropic's shape. ``count_tokens`` asks an Anthropic platform, and is
estimated locally (tiktoken-free character rule of ``providers.http``) for the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from aigate.config.runtime import RelayToken
from aigate.engine import relay
from aigate.engine.calls import Call, StreamState, pump
from aigate.engine.relay import RELAY_ERRORS, RelayCall, RelayError, invalid
from aigate.providers import anthropic
from aigate.providers import messages_chat as mc_
from aigate.providers.base import ChatRequest, JsonResult, Platform, StreamEvent, Usage
from aigate.providers.http import estimate_usage
from aigate.providers.registry import chat_provider
from aigate.services import Services


def _translation_error(exc: mc_.TranslationError) -> RelayError:
    return invalid(exc.message, exc.param)


async def begin(
    services: Services, token: RelayToken, raw: bytes, endpoint: str, ip: str, *, counting: bool = False
) -> RelayCall:
    """Parse and check the request, admit the token's limits; refusals recorded and raised."""
    call = Call(services, relay.new_record(services, token, "chat", endpoint, ip, raw), RELAY_ERRORS)
    rc = RelayCall(call, token)
    async with call.ending():
        rc.body = body = relay.parse_body(raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("model: Field required", "model")
        call.record.model = model
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages: at least one message is required", "messages")
        if not counting:
            max_tokens = body.get("max_tokens")
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise invalid("max_tokens: Field required (an integer >= 1)", "max_tokens")
            stream = body.get("stream", False)
            if stream is not None and not isinstance(stream, bool):
                raise invalid("stream: Input should be a valid boolean", "stream")
            rc.stream = bool(stream)
        user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
        if isinstance(user, str):
            call.record.user_id = user[:64]
        await relay.admit(rc, model, "chat")
    return rc


def _upstream_body(rc: RelayCall, model: str) -> dict[str, Any]:
    return rc.body if rc.body.get("model") == model else {**rc.body, "model": model}


def _chat_request(rc: RelayCall, model: str) -> ChatRequest:
    try:
        messages, params, extra = mc_.chat_parts(rc.body)
    except mc_.TranslationError as exc:
        raise _translation_error(exc) from None
    return ChatRequest(model=model, messages=messages, params=params, extra=extra)


async def complete(rc: RelayCall, beta: str = "") -> bytes:
    """A non-stream message: the answer's bytes (the upstream's own on Anthropic)."""
    services, call, record = rc.services, rc.call, rc.record

    async def attempt(platform: Platform, model: str) -> tuple[bytes, Usage]:
        upstream = platform.upstream_model(model)
        if platform.type == "anthropic":
            result = await anthropic.passthrough(services.http, platform, _upstream_body(rc, upstream), beta)
            return result.raw, result.usage
        chat = await chat_provider(platform.type).chat(services.http, platform, _chat_request(rc, upstream))
        message = mc_.message_document(chat.openai, chat.usage, model=model)
        record.response_raw = chat.raw
        return orjson.dumps(message), chat.usage

    async with call.ending():
        answer, usage = await call.route(relay.candidates(rc), attempt)
        record.usage = usage
        if not record.response_raw:
            record.response_raw = answer
        await call.succeed()
    return answer


async def count_tokens(rc: RelayCall, beta: str = "") -> bytes:
    """``{"input_tokens": N}``: counted by an Anthropic platform, estimated elsewhere."""
    services, call, record = rc.services, rc.call, rc.record

    async def attempt(platform: Platform, model: str) -> JsonResult:
        upstream = platform.upstream_model(model)
        if platform.type == "anthropic":
            return await anthropic.count_tokens(services.http, platform, _upstream_body(rc, upstream), beta)
        usage = estimate_usage(_chat_request(rc, upstream).messages, 0)
        data = {"input_tokens": usage.input_tokens}
        return JsonResult(data=data, raw=orjson.dumps(data), usage=Usage())

    async with call.ending():
        result = await call.route(relay.candidates(rc), attempt)
        record.response_raw = result.raw
        record.usage = Usage()  # counting tokens costs nothing
        await call.succeed()
    return result.raw


async def open_stream(rc: RelayCall, beta: str = "") -> AsyncIterator[bytes]:
    """Start the upstream stream (failover until its first event), then the SSE frames."""
    services, call = rc.services, rc.call

    def start(platform: Platform, model: str) -> AsyncIterator[StreamEvent]:
        upstream = platform.upstream_model(model)
        if platform.type == "anthropic":
            return anthropic.passthrough_stream(
                services.http, platform, {**_upstream_body(rc, upstream), "stream": True}, beta
            )
        return chat_provider(platform.type).chat_stream(services.http, platform, _chat_request(rc, upstream))

    async with call.ending():
        events, first = await call.open_stream(relay.candidates(rc), start)
        last = rc.record.trace.last
        native = last is not None and last.platform.type == "anthropic"
    output = MessagesOutput(rc, None if native else mc_.MessagesStream(rc.record.model))
    return pump(call, events, first, output)


@dataclass(slots=True)
class MessagesOutput:
    """Anthropic's events: the upstream's (re-framed with their type) or translated ones."""

    rc: RelayCall
    builder: mc_.MessagesStream | None  # None: the upstream speaks Anthropic

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        if not event.openai_chunk:
            return None
        doc = orjson.loads(event.openai_chunk)
        if self.builder is None:
            return b"event: " + str(doc.get("type", "")).encode() + b"\ndata: " + (event.openai_chunk) + b"\n\n"
        return b"".join(self.builder.chunk(doc)) or None

    def estimate(self, state: StreamState) -> Usage:
        try:
            messages = mc_.chat_parts(self.rc.body)[0]
        except mc_.TranslationError:  # blocks only Anthropic knows: count the raw text
            messages = [{"role": "user", "content": orjson.dumps(self.rc.body["messages"]).decode()}]
        return estimate_usage(messages, len(state.generated))

    async def complete(self, state: StreamState) -> None:
        self.rc.record.response_raw = orjson.dumps(
            {"streamed_chars": len(state.text), "usage": mc_.usage_document(self.rc.record.usage)}
        )

    async def abandoned(self, state: StreamState) -> None:
        await self.complete(state)

    def closing(self, state: StreamState) -> list[bytes]:
        if self.builder is None:
            return []
        return self.builder.finish(self.rc.record.usage)

    def error_frame(self, err: Exception) -> bytes:
        if not isinstance(err, RelayError):
            err = RELAY_ERRORS.internal(self.rc.request_id)
        return mc_.event("error", mc_.error_document(err.status, err.message))
