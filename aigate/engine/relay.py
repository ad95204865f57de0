"""The OpenAI-compatible relay (SPEC §7): chat completions, embeddings, images, models.

Pass-through discipline: the body is parsed once and only what routing and metering
need is read (``model``, ``messages``, ``stream``, ``stream_options.include_usage``,
``user``, and ``input`` / ``prompt`` for presence). Every other field goes upstream as
the client sent it: tools, ``response_format``, ``seed``, fields this code has never
heard of. For OpenAI-format platforms (openai, openai_compatible, azure_openai) the
answer is the upstream's body, and each stream chunk the upstream's bytes, unchanged: an
upstream read of ordinary content chunks goes on whole, neither decoded nor parsed
(``openai_wire.passes_whole``), and only the first chunk, the finish, usage and errors
are read event by event. Anthropic and Gemini answers are rebuilt by their adapters as
OpenAI documents. A stream's log row keeps ``{"streamed_bytes", "usage"}``, not the text.

The ``model`` field of an answer is the upstream's: when ``model_mapping`` sent the
client's ``X`` upstream as ``Y``, the answer says ``Y`` (rewriting it would mean
re-serialising every body and chunk). The usage log records ``X``, the name prices and
allow-lists are configured under.

Streams always ask the upstream for usage (metering needs it); the usage-only chunk
(``choices: []``) is passed on only when the client asked for
``stream_options.include_usage``, and one is built when the upstream sent none. With
include_usage on, OpenAI chunks carry ``"usage": null``, exactly as OpenAI sends them.

Every call made with a valid token leaves a usage log row — answered, failed upstream,
or refused here (bad body, model not allowed, limits) — through the batched writer; the
lifecycle (route, count against the token's limits, records) is ``aigate.engine.calls``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import orjson

from aigate.clock import now_ms
from aigate.config.runtime import RelayToken, Snapshot
from aigate.engine import relay_limits, routing
from aigate.engine.calls import Call, StreamState, pump
from aigate.engine.pricing import used_amount
from aigate.engine.records import CallRecord
from aigate.providers import openai as oa
from aigate.providers import openai_wire
from aigate.providers.base import (
    ChatRequest,
    JsonResult,
    Platform,
    StreamEvent,
    UpstreamError,
    Usage,
)
from aigate.providers.http import estimate_usage
from aigate.providers.registry import CHAT_TYPES, OPENAI_FORMAT, chat_provider
from aigate.services import Services

T = TypeVar("T")

# Fields the Anthropic and Gemini adapters read from ChatRequest.params; OpenAI sends
# params and extra alike, so the split changes nothing for it.
SAMPLING = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "max_tokens",
        "max_completion_tokens",
        "stop",
    }
)
_NOT_EXTRA = frozenset({"model", "messages", "stream", "response_format"})
ENDPOINT_TYPES = {"chat": CHAT_TYPES, "embedding": OPENAI_FORMAT, "image": OPENAI_FORMAT, "audio": OPENAI_FORMAT}
DONE = b"data: [DONE]\n\n"


class RelayError(Exception):
    """An error in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.document())


def invalid(message: str, param: str | None = None, code: str | None = None) -> RelayError:
    return RelayError(400, message, param=param, code=code)


def _upstream_detail(body: bytes) -> tuple[str | None, str | None]:
    """``param`` and ``code`` of an upstream OpenAI-style error body, when it has them."""
    try:
        err = orjson.loads(body).get("error") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    if not isinstance(err, dict):
        return None, None
    param, code = err.get("param"), err.get("code")
    return (param if isinstance(param, str) else None, code if isinstance(code, str) else None)


def from_upstream(exc: UpstreamError) -> RelayError:
    """OpenAI's status conventions, so the SDK raises its usual exception classes:

    timeout -> 504; 429 after every attempt -> 429 ``rate_limit_exceeded``; the platform's
    own key refused (401/403) -> 502, since the caller's key is fine; other 4xx the
    upstream judged the request by -> that status with the upstream's message, param and
    code; 5xx, connection and protocol failures -> 502 ``upstream_error``.
    """
    if exc.kind == "config":
        return RelayError(
            503,
            f"No platform can serve this request: {exc.message}",
            "server_error",
            "service_unavailable",
        )
    if exc.kind == "timeout":
        return RelayError(504, f"The upstream did not answer in time: {exc.message}", "server_error", "timeout")
    if exc.status == 429:
        return RelayError(
            429,
            f"The upstream is rate limiting: {exc.message}",
            "rate_limit_exceeded",
            "rate_limit_exceeded",
        )
    if exc.status in (401, 403):  # the platform's credentials, not the caller's: a gateway fault
        return RelayError(
            502,
            "The upstream refused the platform's credentials.",
            "server_error",
            "upstream_error",
        )
    if not exc.retryable and exc.status is not None and 400 <= exc.status < 500:
        param, code = _upstream_detail(exc.body)
        return RelayError(exc.status, exc.message, "invalid_request_error", code, param)
    return RelayError(502, f"Every platform tried failed: {exc.message}", "server_error", "upstream_error")


class RelayErrors:
    """How the relay speaks about a failed call (``aigate.engine.calls.Errors``)."""

    kind = RelayError

    def upstream(self, exc: UpstreamError) -> RelayError:
        return from_upstream(exc)

    def internal(self, ref: str) -> RelayError:
        return RelayError(500, f"internal error (request_id: {ref})", "server_error", "internal_error")

    def unavailable(self, retry_after_s: int) -> RelayError:
        return RelayError(
            503,
            "The service is temporarily unavailable; retry later.",
            "server_error",
            "service_unavailable",
            headers={"retry-after": str(retry_after_s)},
        )


RELAY_ERRORS = RelayErrors()


# --- one call ------------------------------------------------------------------------------


@dataclass(slots=True)
class RelayMeter:
    """A relay token's limits: tokens and spend are counted after the call, answered or not."""

    services: Services
    token: RelayToken

    async def release(self, record: CallRecord) -> None:
        await self.settle(record)

    async def settle(self, record: CallRecord) -> None:
        limits = relay_limits.limits_of(self.services)
        if not limits.tracks(self.token):
            return  # no limit to count against: skip pricing the call twice
        price = self.services.snapshot.price(record.model) if record.model else None
        amount = used_amount(record.usage, price, succeeded=record.succeeded) if price else Decimal(0)
        await limits.settle(self.token, record.usage.total_tokens, amount)


@dataclass(slots=True)
class RelayCall:
    call: Call
    token: RelayToken
    body: dict[str, Any] = field(default_factory=dict)
    platforms: list[Platform] = field(default_factory=list)  # serving the model, by priority
    stream: bool = False
    include_usage: bool = False

    @property
    def services(self) -> Services:
        return self.call.services

    @property
    def record(self) -> CallRecord:
        return self.call.record

    @property
    def request_id(self) -> str:
        return self.record.log_request_id


def new_record(
    services: Services, token: RelayToken, module: str, endpoint: str, ip: str, raw: bytes = b""
) -> CallRecord:
    return CallRecord(
        request_id=0,
        log_request_id=str(services.ids.next()),
        app_id=token.app_id,
        user_id="",
        module=module,
        strategy="",
        endpoint=endpoint,
        started_ms=now_ms(),
        ip=ip,
        token_id=token.id,
        token_name=token.name,
        request_body=raw,
        ai_record=False,
    )


async def refuse(
    services: Services, token: RelayToken, module: str, endpoint: str, ip: str, exc: RelayError
) -> Exception:
    """Record a request refused before its body could be read; the error to raise."""
    call = Call(services, new_record(services, token, module, endpoint, ip), RELAY_ERRORS)
    return await call.fail(exc)


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise invalid("We could not parse the JSON body of your request: the body is empty.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"We could not parse the JSON body of your request ({exc.msg} at position {exc.pos}).") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def usable_platforms(snapshot: Snapshot, token: RelayToken, model: str, module: str) -> list[Platform]:
    """The enabled platforms that can serve ``model`` on this endpoint for this token."""
    if token.models and model not in token.models:
        raise RelayError(
            403,
            f"This API key does not have access to model `{model}`.",
            code="model_not_found",
            param="model",
        )
    served = snapshot.platforms_for(model)
    if not served:
        raise RelayError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    types = ENDPOINT_TYPES[module]
    usable = [p for p in served if p.type in types]
    if not usable:
        raise invalid(
            f"The model `{model}` is not available on this endpoint.",
            "model",
            "model_not_supported",
        )
    return usable


def _check_chat(rc: RelayCall) -> None:
    body = rc.body
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise invalid("'messages' must be a non-empty array of message objects.", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid("'stream' must be a boolean.", "stream")
    rc.stream = bool(stream)
    options = body.get("stream_options")
    rc.include_usage = rc.stream and isinstance(options, dict) and options.get("include_usage") is True


def _check_required(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None or value == "" or value == []:
        raise invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


async def begin(services: Services, token: RelayToken, raw: bytes, module: str, endpoint: str, ip: str) -> RelayCall:
    """Parse, check the model and the token's limits. Refusals are recorded and raised."""
    call = Call(services, new_record(services, token, module, endpoint, ip, raw), RELAY_ERRORS)
    rc = RelayCall(call, token)
    record = call.record
    async with call.ending():
        rc.body = body = parse_body(raw)
        user = body.get("user")
        if isinstance(user, str):
            record.user_id = user[:64]
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("You must provide a model parameter.", "model", "missing_required_parameter")
        record.model = model
        if module == "chat":
            _check_chat(rc)
        else:
            _check_required(body, "input" if module == "embedding" else "prompt")
        await admit(rc, model, module)
    return rc


async def admit(rc: RelayCall, model: str, module: str) -> None:
    """The token may use ``model`` on this endpoint and is within its limits (else the
    refusal is raised); from here on the call counts against the token."""
    services, token = rc.services, rc.token
    rc.platforms = usable_platforms(services.snapshot, token, model, module)
    if relay_limits.has_limits(token):
        refusal = await relay_limits.limits_of(services).admit(token)
        if refusal is not None:
            raise refusal_error(refusal)
    rc.call.meter = RelayMeter(services, token)


def refusal_error(refusal: relay_limits.Refusal) -> RelayError:
    if refusal.kind == "spend":  # waiting does not help: tell the SDK not to retry
        return RelayError(
            429,
            refusal.message,
            "insufficient_quota",
            "insufficient_quota",
            headers={"x-should-retry": "false"},
        )
    return RelayError(
        429,
        refusal.message,
        refusal.kind,
        "rate_limit_exceeded",
        headers={"retry-after": str(refusal.retry_after_s)},
    )


def candidates(rc: RelayCall) -> list[tuple[Platform, str]]:
    cooldowns = routing.cooldowns_of(rc.services)
    return [(p, rc.record.model) for p in routing.order(rc.platforms, cooldowns)]


def _openai_format(rc: RelayCall) -> bool:
    last = rc.record.trace.last
    return last is not None and last.platform.type in OPENAI_FORMAT


# --- chat completions ------------------------------------------------------------------------


def _chat_parts(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(params, extra, response_format) for ChatRequest: nothing is dropped or rewritten."""
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in body.items():
        if key in SAMPLING:
            params[key] = value
        elif key not in _NOT_EXTRA:
            extra[key] = value
    fmt = body.get("response_format")
    if fmt is not None and not isinstance(fmt, dict):
        extra["response_format"] = fmt  # not ours to judge: the upstream answers it
        fmt = None
    return params, extra, fmt


def _requester(rc: RelayCall) -> Callable[[Platform, str], ChatRequest]:
    params, extra, fmt = _chat_parts(rc.body)
    messages = rc.body["messages"]

    def request(platform: Platform, model: str) -> ChatRequest:
        return ChatRequest(
            model=platform.upstream_model(model),
            messages=messages,
            params=params,
            response_format=fmt,
            extra=extra,
            sse_passthrough=rc.stream,
        )

    return request


async def complete(rc: RelayCall) -> bytes:
    """A non-stream chat completion: the answer's bytes."""
    services, call, record = rc.services, rc.call, rc.record
    request = _requester(rc)

    async def attempt(platform: Platform, model: str):
        return await chat_provider(platform.type).chat(services.http, platform, request(platform, model))

    async with call.ending():
        result = await call.route(candidates(rc), attempt)
        record.usage, record.response_raw = result.usage, result.raw
        answer = result.raw if _openai_format(rc) else orjson.dumps(result.openai)
        await call.succeed()
    return answer


async def open_stream(rc: RelayCall) -> AsyncIterator[bytes]:
    """Start the upstream stream, failing over only until its first event arrives; errors
    up to here are raised (the client gets an ordinary JSON error with its status)."""
    services, call = rc.services, rc.call
    request = _requester(rc)

    def start(platform: Platform, model: str) -> AsyncIterator[StreamEvent]:
        return chat_provider(platform.type).chat_stream(services.http, platform, request(platform, model))

    async with call.ending():
        events, first = await call.open_stream(candidates(rc), start)
    return pump(call, events, first, RelayStream(rc))


def _frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def _usage_only(event: StreamEvent, chunk: bytes) -> bool:
    """The closing ``choices: []`` chunk (OpenAI's include_usage chunk). Parsed only for
    the one event per stream that carries usage, so no content chunk is ever dropped."""
    if event.usage is None or event.delta or event.finish_reason is not None:
        return False
    try:
        return not orjson.loads(chunk).get("choices")
    except (orjson.JSONDecodeError, AttributeError):
        return False


@dataclass(slots=True)
class RelayStream:
    """OpenAI chunk SSE: the upstream's chunks (or the adapter's), then ``[DONE]``."""

    rc: RelayCall
    usage_sent: bool = False
    sent_bytes: int = 0  # the frames built here before the closing ones (the log's summary)

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        chunk = event.openai_chunk
        if chunk is None:
            return None
        if _usage_only(event, chunk):
            if not self.rc.include_usage:
                return None
            self.usage_sent = True
        frame = _frame(chunk)
        self.sent_bytes += len(frame)
        return frame

    def estimate(self, state: StreamState) -> Usage:
        return estimate_usage(self.rc.body["messages"], state.generated, self.rc.record.model)

    async def complete(self, state: StreamState) -> None:
        record = self.rc.record
        record.response_raw = orjson.dumps(
            {"streamed_bytes": self.sent_bytes + state.passed_bytes, "usage": openai_wire.usage_document(record.usage)}
        )

    async def abandoned(self, state: StreamState) -> None:
        await self.complete(state)

    def closing(self, state: StreamState) -> list[bytes]:
        record = self.rc.record
        if self.rc.include_usage and not self.usage_sent:  # the upstream reported none: ours, estimated
            return [
                _frame(openai_wire.usage_chunk_bytes(state.chunk_id, record.model, now_ms() // 1000, record.usage)),
                DONE,
            ]
        return [DONE]

    def error_frame(self, err: Exception) -> bytes:
        # the SDK raises APIError on an in-stream error object
        if not isinstance(err, RelayError):
            err = RELAY_ERRORS.internal(self.rc.request_id)
        return _frame(err.body())


# --- embeddings and images -------------------------------------------------------------------


Send = Callable[[aiohttp.ClientSession, Platform, dict[str, Any]], Awaitable[JsonResult]]


async def _json_call(rc: RelayCall, send: Send) -> bytes:
    services, call, record, body = rc.services, rc.call, rc.record, rc.body

    async def attempt(platform: Platform, model: str):
        upstream = platform.upstream_model(model)
        return await send(services.http, platform, body if upstream == model else {**body, "model": upstream})

    async with call.ending():
        result = await call.route(candidates(rc), attempt)
        record.usage, record.response_raw = result.usage, result.raw
        await call.succeed()
    return result.raw


async def embeddings(rc: RelayCall) -> bytes:
    return await _json_call(rc, oa.embeddings)


async def images(rc: RelayCall) -> bytes:
    return await _json_call(rc, oa.images)


# --- models ------------------------------------------------------------------------------------


def _served(snapshot: Snapshot) -> dict[str, str]:
    """Every model an enabled platform serves -> the type of its highest-priority platform."""
    owners: dict[str, tuple[int, str]] = {}
    for p in snapshot.platforms.values():
        if not p.enabled:
            continue
        for m in p.models:
            if m not in owners or p.priority > owners[m][0]:
                owners[m] = (p.priority, p.type)
    return {m: owner[1] for m, owner in owners.items()}


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def models(snapshot: Snapshot, token: RelayToken) -> dict[str, Any]:
    """The models this token may use: its allow-list (those some platform serves), or all."""
    served = _served(snapshot)
    names = sorted(m for m in served if not token.models or m in token.models)
    return {"object": "list", "data": [_model_object(m, served[m]) for m in names]}


def model(snapshot: Snapshot, token: RelayToken, name: str) -> dict[str, Any]:
    owner = _served(snapshot).get(name)
    if owner is None or (token.models and name not in token.models):
        raise RelayError(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    return _model_object(name, owner)
