"""The chat flow of SPEC §5.1–5.2.

resolve strategy → render system prompt → load the chat's recent history → reserve
limit and cost (atomic) → call platforms (retry/fallback) → refund on failure → save the
exchange → write the AI request record and the usage log row.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from aigate.auth.caller import Caller
from aigate.clock import now_ms
from aigate.config.schema import StrategyCfg
from aigate.engine import metering, routing
from aigate.engine.chat_input import ChatInput, first_user_text, parse_chat_input
from aigate.engine.detached import run_detached
from aigate.engine.ids import new_chat_id
from aigate.engine.prompts import render_text
from aigate.engine.records import CallRecord, write_records
from aigate.engine.upstream_errors import to_app_error
from aigate.errors import AppError, invalid, not_found
from aigate.providers.base import ChatRequest, ChatResult, StreamEvent, UpstreamError, Usage
from aigate.providers.http import estimate_usage
from aigate.providers.registry import chat_provider
from aigate.services import Services
from aigate.store.script import run_script
from aigate.store.sinks import write_chat_exchanges


@dataclass(slots=True)
class ChatCall:
    services: Services
    caller: Caller
    record: CallRecord
    strategy: StrategyCfg | None = None
    input: ChatInput | None = None
    chat_id: str = ""
    new_chat: bool = False
    upstream_messages: list[dict[str, Any]] = field(default_factory=list)
    reservation: metering.Reservation | None = None


def new_record(services: Services, caller: Caller, module: str, endpoint: str, ip: str,
               strategy: str = "") -> CallRecord:
    return CallRecord(
        request_id=services.ids.next(),
        log_request_id=str(services.ids.next()),
        app_id=caller.app.id,
        user_id=caller.user_id,
        module=module,
        strategy=strategy,
        endpoint=endpoint,
        started_ms=now_ms(),
        from_appserver=caller.from_appserver,
        ip=ip,
    )


async def fail(services: Services, record: CallRecord, exc: AppError,
               reservation: metering.Reservation | None = None) -> AppError:
    """Refund, record the failed call, and hand back the error to raise."""
    if reservation is not None:
        await metering.release(services, reservation)
    record.code = exc.status
    record.status = "failed"
    record.error = exc.message
    await write_records(services, record)
    return exc


def resolve_strategy(caller: Caller, name: str, module: str = "chat") -> StrategyCfg:
    strategy = caller.app.strategies.get(name)
    if strategy is None or not strategy.enabled:
        raise not_found(f"strategy: '{name}' not found")
    if strategy.module != module:
        raise invalid(f"strategy: '{name}' is a {strategy.module} strategy; call it through /ai/ai_request")
    return strategy


OWNED_CHAT = "SELECT 1 FROM chats WHERE chat_id = :chat AND app_id = :app AND user_id = :user"
RECENT_EXCHANGES = "SELECT messages FROM chat_exchanges WHERE chat_id = :chat ORDER BY id DESC LIMIT :limit"


def _history_script(db, chat_id: str, app_id: str, user_id: str, limit: int) -> list[Any] | None:
    if not db.rows(OWNED_CHAT, {"chat": chat_id, "app": app_id, "user": user_id}):
        return None
    return [row[0] for row in db.rows(RECENT_EXCHANGES, {"chat": chat_id, "limit": limit})] if limit else []


async def load_history(services: Services, caller: Caller, chat_id: str, limit: int) -> list[dict[str, Any]]:
    """The chat's last ``limit`` messages; 404 when the chat is not this user's."""
    rows = await run_script(services.engine, _history_script, chat_id, caller.app.id, caller.user_id, limit)
    if rows is None:
        raise not_found(f"chat_id: '{chat_id}' not found")
    # each exchange holds at least one message, so ``limit`` exchanges cover ``limit`` messages
    messages = [m for raw in reversed(rows) for m in (orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw)]
    return messages[-limit:] if limit else []


async def prepare(services: Services, caller: Caller, body: dict[str, Any], endpoint: str, ip: str) -> ChatCall:
    """Everything before the upstream call. Failures are recorded and raised as AppError."""
    call = ChatCall(services, caller, new_record(services, caller, "chat", endpoint, ip))
    call.record.request_body = body
    try:
        call.input = inp = parse_chat_input(body)
        call.record.strategy = inp.strategy
        call.strategy = strategy = resolve_strategy(caller, inp.strategy)
        call.record.model = strategy.model
        system = render_text(strategy.system_prompt, inp.parameters, f"strategy '{strategy.name}'")
        history: list[dict[str, Any]] = []
        if strategy.history.save:
            if inp.chat_id:
                history = await load_history(services, caller, inp.chat_id, strategy.history.context_messages)
                call.chat_id = inp.chat_id
            else:
                call.chat_id, call.new_chat = new_chat_id(), True
        call.upstream_messages = ([{"role": "system", "content": system}] if system else []) + history + inp.messages
        call.record.metadata["chat_id"] = call.chat_id
        call.reservation = await metering.reserve(
            services, caller, strategy.name, strategy.cost, strategy.limit, str(call.record.request_id))
    except AppError as exc:
        raise await fail(services, call.record, exc) from None
    return call


def _chat_request(call: ChatCall, model: str) -> ChatRequest:
    strategy, inp = call.strategy, call.input
    fmt = inp.response_format or strategy.response_format
    return ChatRequest(
        model=model,
        messages=call.upstream_messages,
        params=dict(strategy.params),
        response_format={"type": fmt} if fmt == "json_object" else None,
    )


def _candidates(call: ChatCall):
    s = call.strategy
    return routing.candidates(call.services.snapshot, routing.cooldowns_of(call.services), s.model,
                              s.fallback_models, s.platforms)


def _tokens(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


async def _save_exchange(call: ChatCall, reply: str, usage: Usage) -> None:
    if not call.chat_id:
        return
    # Committed before the response (the client's next turn must see it), in a short
    # transaction of its own; concurrent saves share one commit on SQLite.
    await run_script(call.services.engine, write_chat_exchanges, [dict(
        chat_id=call.chat_id, app_id=call.caller.app.id, user_id=call.caller.user_id,
        strategy=call.strategy.name, title=first_user_text(call.input.messages)[:100] if call.new_chat else "",
        messages=[*call.input.messages, {"role": "assistant", "content": reply}],
        tokens=usage.total_tokens, request_id=str(call.record.request_id), created_ms=now_ms(),
    )])


def _summary(call: ChatCall, usage: Usage) -> dict[str, Any]:
    res = call.reservation
    return {
        "asset": metering.assets_json(call.caller, res.balances, res.recovered),
        "chat_id": call.chat_id,
        "current_count": res.current_count,
        "current_total_count": res.current_total_count,
        "tokens": _tokens(usage),
        "user_surplus_count": res.user_surplus_count,
    }


async def complete(call: ChatCall) -> dict[str, Any]:
    """Non-stream chat: the seed 002 response object."""
    services, record = call.services, call.record

    async def attempt(platform, model) -> ChatResult:
        record.model = model
        req = _chat_request(call, platform.upstream_model(model))
        return await chat_provider(platform.type).chat(services.http, platform, req)

    try:
        result = await routing.call_with_retries(_candidates(call), attempt, record.trace,
                                                 routing.cooldowns_of(services))
    except UpstreamError as exc:
        record.response_raw = exc.body
        raise await fail(services, record, to_app_error(exc), call.reservation) from None
    record.usage, record.response_raw = result.usage, result.raw
    await _save_exchange(call, result.content, result.usage)
    await write_records(services, record)
    return {**_summary(call, result.usage), "reply": {"role": "assistant", "content": result.content}}


# --- streaming


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def open_stream(call: ChatCall) -> AsyncIterator[bytes]:
    """Start the upstream stream, failing over only until its first event arrives.
    Errors up to here are raised (the client gets an ordinary JSON error)."""
    services, record = call.services, call.record

    async def attempt(platform, model):
        record.model = model
        req = _chat_request(call, platform.upstream_model(model))
        events = chat_provider(platform.type).chat_stream(services.http, platform, req).__aiter__()
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            raise UpstreamError("the upstream stream ended before any event", retryable=True, kind="protocol") from None
        return events, first

    try:
        events, first = await routing.call_with_retries(_candidates(call), attempt, record.trace,
                                                        routing.cooldowns_of(services))
    except UpstreamError as exc:
        record.response_raw = exc.body
        raise await fail(services, record, to_app_error(exc), call.reservation) from None
    return _relay_stream(call, events, first)


async def _relay_stream(call: ChatCall, events: AsyncIterator[StreamEvent], first: StreamEvent) -> AsyncIterator[bytes]:
    services, record = call.services, call.record
    parts: list[str] = []
    usage: Usage | None = None
    chat_id = call.chat_id
    finished = False
    try:
        event: StreamEvent | None = first
        while event is not None:
            if event.usage is not None:
                usage = event.usage
            if event.delta:
                parts.append(event.delta)
                yield sse("ai_chat_msg", {"chat_id": chat_id, "content": event.delta, "is_finish": False})
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                event = None
        finished = True
    except UpstreamError as exc:
        finished = True
        record.response_raw = exc.body
        err = to_app_error(exc)
        await fail(services, record, err, call.reservation)
        yield sse("ai_chat_error", err.body())
        return
    finally:
        if not finished:
            # The client went away: the upstream read was cancelled with us. What was
            # generated is saved and billed, in a task of its own (this one is cancelled).
            reply = "".join(parts)
            run_detached(_finish(call, reply, usage, disconnected=True, events=events))
    reply = "".join(parts)
    usage = await _finish(call, reply, usage, disconnected=False)
    yield sse("ai_chat_msg", {"chat_id": chat_id, "content": "", "is_finish": True, **_summary(call, usage)})


async def _finish(call: ChatCall, reply: str, usage: Usage | None, *, disconnected: bool,
                  events: AsyncIterator[StreamEvent] | None = None) -> Usage:
    record = call.record
    if events is not None:
        try:
            await events.aclose()  # stop reading the upstream (closes its connection)
        except Exception:  # already broken or finished: nothing left to stop
            pass
    if usage is None:  # cut short before the upstream reported usage
        usage = estimate_usage(call.upstream_messages, len(reply))
    record.usage = usage
    record.response_raw = orjson.dumps({"content": reply, "usage": _tokens(usage)})
    if disconnected:
        record.code = 499  # the client closed the request (the partial reply is billed)
        record.error = f"client disconnected after {len(reply)} characters"
    await _save_exchange(call, reply, usage)
    await write_records(call.services, record)
    return usage


async def start(services: Services, caller: Caller, body: dict[str, Any], endpoint: str, ip: str,
                *, stream: bool):
    call = await prepare(services, caller, body, endpoint, ip)
    if stream:
        return await open_stream(call)
    return await complete(call)
