"""The Responses API on the relay (SPEC §13): ``POST /v1/responses`` (and stream), one
more flow on the shared call lifecycle (``aigate.engine.calls``) with the relay's
routing, token limits, pricing and usage log.

Per platform: ``openai`` (and ``openai_compatible`` with ``options.responses: native``)
get the Responses body as sent, with the conversation of ``previous_response_id``
prepended to ``input``, ``previous_response_id`` removed and ``store: false``; every
other chat platform gets a chat completion translated by
``aigate.providers.responses_chat``. Either way the client sees aigate's own response
id, the response is stored by aigate (unless the client sent ``store: false``), and a
failover to another platform keeps the thread. A stream holds back its closing event
(``response.completed``) until the response is stored, so a client that reacts to it
at once finds the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from aigate.config.runtime import RelayToken
from aigate.engine import relay, response_store
from aigate.engine.calls import Call, StreamState, pump
from aigate.engine.relay import RELAY_ERRORS, RelayCall, RelayError, invalid
from aigate.providers import openai_responses
from aigate.providers import responses_chat as rc_
from aigate.providers.base import ChatRequest, Platform, StreamEvent, Usage
from aigate.providers.http import estimate_usage
from aigate.providers.registry import chat_provider
from aigate.services import Services


@dataclass(slots=True)
class ResponsesCall:
    relay: RelayCall
    history: list[dict[str, Any]] = field(default_factory=list)  # previous_response_id's thread
    items: list[dict[str, Any]] = field(default_factory=list)  # this request's input items
    response_id: str = field(default_factory=response_store.new_response_id)

    @property
    def body(self) -> dict[str, Any]:
        return self.relay.body

    @property
    def call(self) -> Call:
        return self.relay.call

    @property
    def request_id(self) -> str:
        return self.relay.request_id


def _translation_error(exc: rc_.TranslationError) -> RelayError:
    return invalid(exc.message, exc.param)


async def begin(services: Services, token: RelayToken, raw: bytes, endpoint: str, ip: str) -> ResponsesCall:
    """Parse and check the request, load ``previous_response_id``, admit the token's limits.
    Refusals are recorded and raised."""
    call = Call(services, relay.new_record(services, token, "chat", endpoint, ip, raw), RELAY_ERRORS)
    rcall = RelayCall(call, token)
    x = ResponsesCall(rcall)
    async with call.ending():
        rcall.body = body = relay.parse_body(raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        call.record.model = model
        if isinstance(body.get("user"), str):
            call.record.user_id = body["user"][:64]
        try:
            x.items = rc_.input_items(body.get("input"))
        except rc_.TranslationError as exc:
            raise _translation_error(exc) from None
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise invalid("'stream' must be a boolean.", "stream")
        rcall.stream = bool(stream)
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = await response_store.load(services, token.app_id, str(previous))
            if stored is None:
                raise RelayError(
                    404,
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            x.history = stored.conversation
        await relay.admit(rcall, model, "chat")
    return x


def _portable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items as a stateless upstream takes them back (``store: false``): no item
    ids it would look up, assistant messages as plain role/content, no reasoning items
    (they only come back with their encrypted content, which aigate does not ask for)."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "reasoning":
            continue
        if kind == "message" and item.get("role") == "assistant" and "id" in item:
            text = "".join(
                part.get("text") or part.get("refusal") or ""
                for part in item.get("content") or ()
                if isinstance(part, dict)
            )
            out.append({"role": "assistant", "content": text})
        elif kind in ("function_call", "function_call_output"):
            out.append({k: v for k, v in item.items() if k not in ("id", "status")})
        else:
            out.append(item)
    return out


def _native_body(x: ResponsesCall, model: str) -> dict[str, Any]:
    body = {k: v for k, v in x.body.items() if k != "previous_response_id"}
    body.update(model=model, input=[*_portable(x.history), *x.items], store=False)
    return body


def _chat_request(x: ResponsesCall, model: str) -> ChatRequest:
    try:
        messages, params, extra, fmt = rc_.chat_parts(x.body, x.history)
    except rc_.TranslationError as exc:
        raise _translation_error(exc) from None
    return ChatRequest(model=model, messages=messages, params=params, response_format=fmt, extra=extra)


def _own(x: ResponsesCall, doc: dict[str, Any]) -> dict[str, Any]:
    """An upstream response object as aigate's: its id, the thread it continues."""
    doc["id"] = x.response_id
    doc["previous_response_id"] = x.body.get("previous_response_id")
    if "store" in doc:
        doc["store"] = x.body.get("store", True) is not False
    return doc


async def _keep(x: ResponsesCall, response: dict[str, Any]) -> None:
    if x.body.get("store", True) is False:
        return
    record = x.relay.record
    output = [item for item in response.get("output") or () if isinstance(item, dict)]
    await response_store.save(
        x.relay.services,
        response_id=x.response_id,
        app_id=x.relay.token.app_id,
        token_id=x.relay.token.id,
        model=record.model,
        conversation=[*x.history, *x.items, *output],
        response=response,
    )


async def complete(x: ResponsesCall) -> dict[str, Any]:
    """A non-stream response: the response object."""
    services, call, record = x.relay.services, x.call, x.relay.record

    async def attempt(platform: Platform, model: str) -> tuple[dict[str, Any], Usage, bytes]:
        upstream = platform.upstream_model(model)
        if openai_responses.speaks_natively(platform):
            result = await openai_responses.create(services.http, platform, _native_body(x, upstream))
            return _own(x, result.data), result.usage, result.raw
        chat = await chat_provider(platform.type).chat(services.http, platform, _chat_request(x, upstream))
        doc = rc_.response_document(
            x.body, chat.openai, chat.usage, response_id=x.response_id, model=chat.openai.get("model") or upstream
        )
        return doc, chat.usage, chat.raw

    async with call.ending():
        doc, usage, raw = await call.route(relay.candidates(x.relay), attempt)
        record.usage, record.response_raw = usage, raw
        await _keep(x, doc)
        await call.succeed()
    return doc


async def open_stream(x: ResponsesCall) -> AsyncIterator[bytes]:
    """Start the upstream stream (failover until its first event), then the SSE frames."""
    services, call = x.relay.services, x.call

    def start(platform: Platform, model: str) -> AsyncIterator[StreamEvent]:
        upstream = platform.upstream_model(model)
        if openai_responses.speaks_natively(platform):
            return openai_responses.stream(services.http, platform, {**_native_body(x, upstream), "stream": True})
        return chat_provider(platform.type).chat_stream(services.http, platform, _chat_request(x, upstream))

    async with call.ending():
        events, first = await call.open_stream(relay.candidates(x.relay), start)
        last = x.relay.record.trace.last
        native = last is not None and openai_responses.speaks_natively(last.platform)
    output = (
        NativeStream(x)
        if native
        else TranslatedStream(x, rc_.ResponsesStream(x.body, x.response_id, x.relay.record.model))
    )
    return pump(call, events, first, output)


def _sse(kind: str, doc: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"


class _Output:
    """What both stream kinds share: storing the response, then the held-back end."""

    def __init__(self, x: ResponsesCall) -> None:
        self.x = x
        self.closing_frames: list[bytes] = []
        self.final: dict[str, Any] | None = None

    def estimate(self, state: StreamState) -> Usage:
        text = orjson.dumps([*self.x.history, *self.x.items]).decode()
        return estimate_usage([{"role": "user", "content": text}], len(state.generated))

    async def abandoned(self, state: StreamState) -> None:
        return None  # the client left: nothing to continue from

    def closing(self, state: StreamState) -> list[bytes]:
        return self.closing_frames

    def error_frame(self, err: Exception) -> bytes:
        if not isinstance(err, RelayError):
            err = RELAY_ERRORS.internal(self.x.request_id)
        doc = {
            "type": "error",
            "sequence_number": 0,
            "code": err.code or err.type,
            "message": err.message,
            "param": err.param,
        }
        return _sse("error", doc)


class NativeStream(_Output):
    """The upstream's own events, with aigate's response id; the last one held back."""

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        doc = orjson.loads(event.openai_chunk or b"{}")
        kind = doc.get("type", "")
        if isinstance(doc.get("response"), dict):
            _own(self.x, doc["response"])
        if kind in ("response.completed", "response.incomplete"):
            self.final = doc["response"]
            self.closing_frames = [_sse(kind, doc)]
            return None
        return _sse(kind, doc)

    async def complete(self, state: StreamState) -> None:
        if self.final is not None:
            self.x.relay.record.response_raw = orjson.dumps(self.final)
            await _keep(self.x, self.final)


class TranslatedStream(_Output):
    """Chat chunks turned into Responses events (``responses_chat.ResponsesStream``)."""

    def __init__(self, x: ResponsesCall, builder: rc_.ResponsesStream) -> None:
        super().__init__(x)
        self.builder = builder
        self.started = False

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return self.builder.start()

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        frames = self._start()
        if event.openai_chunk:
            frames += self.builder.chunk(orjson.loads(event.openai_chunk))
        return b"".join(frames) or None

    async def complete(self, state: StreamState) -> None:
        head = self._start()
        frames, response = self.builder.finish(self.x.relay.record.usage)
        self.x.relay.record.response_raw = orjson.dumps(response)
        await _keep(self.x, response)
        self.closing_frames = head + frames
