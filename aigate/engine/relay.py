"""The OpenAI-compatible relay (SPEC §7): chat completions, embeddings, images, models.

Pass-through discipline: the body is parsed once and only what routing and metering
need is read (``model``, ``messages``, ``stream``, ``stream_options.include_usage``,
``user``, and ``input`` / ``prompt`` for presence). Every other field goes upstream as
the client sent it: tools, ``response_format``, ``seed``, fields this code has never
heard of. For OpenAI-format platforms (openai, openai_compatible, azure_openai) the
answer is the upstream's body, and each stream chunk the upstream's bytes, unchanged;
Anthropic and Gemini answers are rebuilt by their adapters as OpenAI documents.

The ``model`` field of an answer is the upstream's: when ``model_mapping`` sent the
client's ``X`` upstream as ``Y``, the answer says ``Y`` (rewriting it would mean
re-serialising every body and chunk). The usage log records ``X``, the name prices and
allow-lists are configured under.

Streams always ask the upstream for usage (metering needs it); the usage-only chunk
(``choices: []``) is passed on only when the client asked for
``stream_options.include_usage``, and one is built when the upstream sent none. With
include_usage on, OpenAI chunks carry ``"usage": null``, exactly as OpenAI sends them.

Every call made with a valid token leaves a usage log row — answered, failed upstream,
or refused here (bad body, model not allowed, limits) — through the batched writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import orjson

from aigate.clock import now_ms
from aigate.config.runtime import RelayToken, Snapshot
from aigate.engine import relay_limits, routing
from aigate.engine.detached import run_detached
from aigate.engine.pricing import used_amount
from aigate.engine.records import CallRecord, write_records
from aigate.providers import openai as oa
from aigate.providers.base import (
    ChatRequest,
    JsonResult,
    Platform,
    StreamEvent,
    UpstreamError,
    Usage,
)
from aigate.providers.http import estimate_usage
from aigate.providers.registry import CHAT_TYPES, chat_provider
from aigate.services import Services

T = TypeVar("T")

OPENAI_TYPES = frozenset({"openai", "openai_compatible", "azure_openai"})
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
ENDPOINT_TYPES = {"chat": CHAT_TYPES, "embedding": OPENAI_TYPES, "image": OPENAI_TYPES}
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
        return RelayError(
            504, f"The upstream did not answer in time: {exc.message}", "server_error", "timeout"
        )
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
    return RelayError(
        502, f"Every platform tried failed: {exc.message}", "server_error", "upstream_error"
    )


# --- one call ------------------------------------------------------------------------------


@dataclass(slots=True)
class RelayCall:
    services: Services
    token: RelayToken
    record: CallRecord
    body: dict[str, Any] = field(default_factory=dict)
    platforms: list[Platform] = field(default_factory=list)  # serving the model, by priority
    stream: bool = False
    include_usage: bool = False

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


async def _settle(services: Services, token: RelayToken, record: CallRecord) -> None:
    limits = relay_limits.limits_of(services)
    if not limits.tracks(token):
        return  # no limit to count against: skip pricing the call twice
    price = services.snapshot.price(record.model) if record.model else None
    amount = used_amount(record.usage, price, succeeded=record.succeeded) if price else Decimal(0)
    await limits.settle(token, record.usage.total_tokens, amount)


async def finish(services: Services, token: RelayToken, record: CallRecord) -> None:
    """Queue the log row and count the call against the token's limits."""
    await write_records(services, record)
    await _settle(services, token, record)


async def fail(
    services: Services, token: RelayToken, record: CallRecord, exc: RelayError
) -> RelayError:
    """Record a refused or failed call; hands back the error to raise."""
    record.code = exc.status
    record.status = "failed"
    record.error = exc.message
    await finish(services, token, record)
    return exc


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise invalid("We could not parse the JSON body of your request: the body is empty.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(
            f"We could not parse the JSON body of your request ({exc.msg} at position {exc.pos})."
        ) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _platforms(snapshot: Snapshot, token: RelayToken, model: str, module: str) -> list[Platform]:
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


def _check_chat(call: RelayCall) -> None:
    body = call.body
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise invalid("'messages' must be a non-empty array of message objects.", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid("'stream' must be a boolean.", "stream")
    call.stream = bool(stream)
    options = body.get("stream_options")
    call.include_usage = (
        call.stream and isinstance(options, dict) and options.get("include_usage") is True
    )


def _check_required(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None or value == "" or value == []:
        raise invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


async def begin(
    services: Services, token: RelayToken, raw: bytes, module: str, endpoint: str, ip: str
) -> RelayCall:
    """Parse, check the model and the token's limits. Refusals are recorded and raised."""
    record = new_record(services, token, module, endpoint, ip, raw)
    call = RelayCall(services, token, record)
    try:
        call.body = body = _parse(raw)
        user = body.get("user")
        if isinstance(user, str):
            record.user_id = user[:64]
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid(
                "You must provide a model parameter.", "model", "missing_required_parameter"
            )
        record.model = model
        if module == "chat":
            _check_chat(call)
        else:
            _check_required(body, "input" if module == "embedding" else "prompt")
        call.platforms = _platforms(services.snapshot, token, model, module)
        if relay_limits.has_limits(token):
            refusal = await relay_limits.limits_of(services).admit(token)
            if refusal is not None:
                raise _refused(refusal)
    except RelayError as exc:
        raise await fail(services, token, record, exc) from None
    return call


def _refused(refusal: relay_limits.Refusal) -> RelayError:
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


async def _route(call: RelayCall, attempt: Callable[[Platform, str], Awaitable[T]]) -> T:
    """Run ``attempt`` over the platforms with retries; upstream failures are recorded."""
    services, record = call.services, call.record
    cooldowns = routing.cooldowns_of(services)
    cands = [(p, record.model) for p in routing.order(call.platforms, cooldowns)]
    try:
        return await routing.call_with_retries(cands, attempt, record.trace, cooldowns)
    except UpstreamError as exc:
        record.response_raw = exc.body
        raise await fail(services, call.token, record, from_upstream(exc)) from None


def _openai_format(call: RelayCall) -> bool:
    last = call.record.trace.last
    return last is not None and last.platform.type in OPENAI_TYPES


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


def _requester(call: RelayCall) -> Callable[[Platform, str], ChatRequest]:
    params, extra, fmt = _chat_parts(call.body)
    messages = call.body["messages"]

    def request(platform: Platform, model: str) -> ChatRequest:
        return ChatRequest(
            model=platform.upstream_model(model),
            messages=messages,
            params=params,
            response_format=fmt,
            extra=extra,
        )

    return request


async def complete(call: RelayCall) -> bytes:
    """A non-stream chat completion: the answer's bytes."""
    services, record = call.services, call.record
    request = _requester(call)

    async def attempt(platform: Platform, model: str):
        return await chat_provider(platform.type).chat(
            services.http, platform, request(platform, model)
        )

    result = await _route(call, attempt)
    record.usage, record.response_raw = result.usage, result.raw
    await finish(services, call.token, record)
    return result.raw if _openai_format(call) else orjson.dumps(result.openai)


async def open_stream(call: RelayCall) -> AsyncIterator[bytes]:
    """Start the upstream stream, failing over only until its first event arrives; errors
    up to here are raised (the client gets an ordinary JSON error with its status)."""
    services = call.services
    request = _requester(call)

    async def attempt(platform: Platform, model: str):
        events = chat_provider(platform.type).chat_stream(
            services.http, platform, request(platform, model)
        )
        events = events.__aiter__()
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            raise UpstreamError(
                "the upstream stream ended before any event", retryable=True, kind="protocol"
            ) from None
        return events, first

    events, first = await _route(call, attempt)
    return _relay_stream(call, events, first)


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
class _StreamState:
    chars: int = 0
    usage: Usage | None = None
    chunk_id: str = ""
    usage_sent: bool = False


async def _relay_stream(
    call: RelayCall, events: AsyncIterator[StreamEvent], first: StreamEvent
) -> AsyncIterator[bytes]:
    services, record = call.services, call.record
    state = _StreamState()
    finished = False
    try:
        event: StreamEvent | None = first
        while event is not None:
            if event.usage is not None:
                state.usage = event.usage
            state.chars += len(event.delta)
            state.chunk_id = state.chunk_id or event.upstream_id
            chunk = event.openai_chunk
            if chunk is not None:
                if not _usage_only(event, chunk):
                    yield _frame(chunk)
                elif call.include_usage:
                    state.usage_sent = True
                    yield _frame(chunk)
            event = await anext(events, None)
        finished = True
    except UpstreamError as exc:
        finished = True
        _close_usage(call, state)
        record.response_raw = exc.body
        err = from_upstream(exc)
        await fail(services, call.token, record, err)
        yield _frame(err.body())  # the SDK raises APIError on an in-stream error object
        return
    finally:
        if not finished:
            # The client went away: the upstream read was cancelled with us. What was
            # generated is logged and billed, in a task of its own (this one is cancelled).
            run_detached(_abandon(call, state, events))
    usage = _close_usage(call, state)
    await finish(services, call.token, record)
    if call.include_usage and not state.usage_sent:  # the upstream reported none: ours, estimated
        yield _frame(oa.usage_chunk_bytes(state.chunk_id, record.model, now_ms() // 1000, usage))
    yield DONE


def _close_usage(call: RelayCall, state: _StreamState) -> Usage:
    usage = state.usage or estimate_usage(call.body["messages"], state.chars)
    call.record.usage = usage
    call.record.response_raw = orjson.dumps(
        {"streamed_chars": state.chars, "usage": oa.usage_document(usage)}
    )
    return usage


async def _abandon(
    call: RelayCall, state: _StreamState, events: AsyncIterator[StreamEvent]
) -> None:
    # stop reading the upstream (closes its connection); a broken one has nothing to stop
    with contextlib.suppress(UpstreamError, OSError, RuntimeError):
        await events.aclose()
    _close_usage(call, state)
    call.record.code = 499  # the client closed the request (the partial answer is billed)
    call.record.error = f"client disconnected after {state.chars} characters"
    await finish(call.services, call.token, call.record)


# --- embeddings and images -------------------------------------------------------------------


Send = Callable[[aiohttp.ClientSession, Platform, dict[str, Any]], Awaitable[JsonResult]]


async def _json_call(call: RelayCall, send: Send) -> bytes:
    services, record, body = call.services, call.record, call.body

    async def attempt(platform: Platform, model: str):
        upstream = platform.upstream_model(model)
        return await send(
            services.http, platform, body if upstream == model else {**body, "model": upstream}
        )

    result = await _route(call, attempt)
    record.usage, record.response_raw = result.usage, result.raw
    await finish(services, call.token, record)
    return result.raw


async def embeddings(call: RelayCall) -> bytes:
    return await _json_call(call, oa.embeddings)


async def images(call: RelayCall) -> bytes:
    return await _json_call(call, oa.images)


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
