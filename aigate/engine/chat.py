"""The chat flow of SPEC §5.1–5.2, on the shared call lifecycle (``aigate.engine.calls``).

resolve strategy → render system prompt → load the chat's recent history → reserve
limit and cost (atomic) → call platforms (retry/fallback) → save the exchange → settle;
any failure on the way releases the reservation; the lifecycle writes the AI request
record and the usage log row.
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
from aigate.engine.calls import Call, CreditMeter, StreamState, app_record, pump
from aigate.engine.chat_input import ChatInput, first_user_text, parse_chat_input
from aigate.engine.ids import new_chat_id
from aigate.engine.prompts import render_text
from aigate.engine.records import CallRecord
from aigate.engine.upstream_errors import APP_ERRORS
from aigate.errors import AppError, invalid, not_found
from aigate.providers.base import ChatRequest, ChatResult, StreamEvent, Usage
from aigate.providers.http import estimate_usage
from aigate.providers.registry import chat_provider
from aigate.services import Services
from aigate.store.script import run_script
from aigate.store.sinks import write_chat_exchanges


@dataclass(slots=True)
class ChatCall:
    call: Call
    caller: Caller
    strategy: StrategyCfg
    input: ChatInput
    reservation: metering.Reservation
    chat_id: str = ""
    new_chat: bool = False
    upstream_messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return self.call.services

    @property
    def record(self) -> CallRecord:
        return self.call.record


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
    """Everything before the upstream call, the reservation last."""
    call = Call(services, app_record(services, caller, "chat", endpoint, ip), APP_ERRORS)
    call.record.request_body = body
    async with call.ending():
        inp = parse_chat_input(body)
        call.record.strategy = inp.strategy
        strategy = resolve_strategy(caller, inp.strategy)
        call.record.model = strategy.model
        system = render_text(strategy.system_prompt, inp.parameters, f"strategy '{strategy.name}'")
        history: list[dict[str, Any]] = []
        chat_id, new_chat = "", False
        if strategy.history.save:
            if inp.chat_id:
                history = await load_history(services, caller, inp.chat_id, strategy.history.context_messages)
                chat_id = inp.chat_id
            else:
                chat_id, new_chat = new_chat_id(), True
        call.record.metadata["chat_id"] = chat_id
        messages = ([{"role": "system", "content": system}] if system else []) + history + inp.messages
        reservation = await metering.reserve_call(
            services,
            caller,
            strategy.name,
            strategy.cost,
            strategy.limit,
            str(call.record.request_id),
            model=strategy.model,
            messages=messages,
            max_tokens=strategy.params.get("max_tokens"),
        )
        call.meter = CreditMeter(services, reservation)
    return ChatCall(call, caller, strategy, inp, reservation, chat_id, new_chat, messages)


def _chat_request(chat: ChatCall, model: str) -> ChatRequest:
    strategy, inp = chat.strategy, chat.input
    fmt = inp.response_format or strategy.response_format
    return ChatRequest(
        model=model,
        messages=chat.upstream_messages,
        params=dict(strategy.params),
        response_format={"type": fmt} if fmt == "json_object" else None,
        openai_chunks=False,  # the App API stream frames the text deltas itself
    )


def _candidates(chat: ChatCall):
    s = chat.strategy
    return routing.candidates(
        chat.services.snapshot, routing.cooldowns_of(chat.services), s.model, s.fallback_models, s.platforms
    )


def _tokens(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


async def _save_exchange(chat: ChatCall, reply: str, usage: Usage) -> None:
    if not chat.chat_id:
        return
    # Committed before the response (the client's next turn must see it), in a short
    # transaction of its own; concurrent saves share one commit on SQLite.
    await run_script(
        chat.services.engine,
        write_chat_exchanges,
        [
            dict(
                chat_id=chat.chat_id,
                app_id=chat.caller.app.id,
                user_id=chat.caller.user_id,
                strategy=chat.strategy.name,
                title=first_user_text(chat.input.messages)[:100] if chat.new_chat else "",
                messages=[*chat.input.messages, {"role": "assistant", "content": reply}],
                tokens=usage.total_tokens,
                request_id=str(chat.record.request_id),
                created_ms=now_ms(),
            )
        ],
    )


def _summary(chat: ChatCall, usage: Usage) -> dict[str, Any]:
    res = chat.reservation
    return {
        "asset": metering.assets_json(chat.caller, res.balances, res.recovered),
        "chat_id": chat.chat_id,
        "current_count": res.current_count,
        "current_total_count": res.current_total_count,
        "tokens": _tokens(usage),
        "user_surplus_count": res.user_surplus_count,
    }


async def complete(chat: ChatCall) -> dict[str, Any]:
    """Non-stream chat: the seed 002 response object."""
    services, call, record = chat.services, chat.call, chat.record

    async def attempt(platform, model) -> ChatResult:
        record.model = model
        req = _chat_request(chat, platform.upstream_model(model))
        return await chat_provider(platform.type).chat(services.http, platform, req)

    async with call.ending():
        result = await call.route(_candidates(chat), attempt)
        record.usage, record.response_raw = result.usage, result.raw
        await _save_exchange(chat, result.content, result.usage)
        await call.succeed()
    return {**_summary(chat, result.usage), "reply": {"role": "assistant", "content": result.content}}


# --- streaming


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def open_stream(chat: ChatCall) -> AsyncIterator[bytes]:
    """Start the upstream stream, failing over only until its first event arrives.
    Errors up to here are raised (the client gets an ordinary JSON error)."""
    services, call, record = chat.services, chat.call, chat.record

    def start(platform, model) -> AsyncIterator[StreamEvent]:
        record.model = model
        req = _chat_request(chat, platform.upstream_model(model))
        return chat_provider(platform.type).chat_stream(services.http, platform, req)

    async with call.ending():
        events, first = await call.open_stream(_candidates(chat), start)
    return pump(call, events, first, ChatStream(chat))


@dataclass(slots=True)
class ChatStream:
    """The App API's stream (``ai_chat_msg`` events, one ``ai_chat_error`` on failure)."""

    chat: ChatCall
    head: bytes = b""  # what every delta's event starts with, up to its text

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        if not event.delta:
            return None
        # the bytes of sse("ai_chat_msg", {"chat_id": ..., "content": delta, "is_finish": False}),
        # with the part every delta shares built once per stream
        if not self.head:
            self.head = b'event: ai_chat_msg\ndata: {"chat_id":' + orjson.dumps(self.chat.chat_id) + b',"content":'
        return self.head + orjson.dumps(event.delta) + b',"is_finish":false}\n\n'

    def estimate(self, state: StreamState) -> Usage:
        return estimate_usage(self.chat.upstream_messages, state.generated, self.chat.record.model)

    async def complete(self, state: StreamState) -> None:
        await self._keep(state)

    async def abandoned(self, state: StreamState) -> None:
        await self._keep(state)

    async def _keep(self, state: StreamState) -> None:
        record = self.chat.record
        reply = state.text
        record.response_raw = orjson.dumps({"content": reply, "usage": _tokens(record.usage)})
        await _save_exchange(self.chat, reply, record.usage)

    def closing(self, state: StreamState) -> list[bytes]:
        summary = _summary(self.chat, self.chat.record.usage)
        return [sse("ai_chat_msg", {"chat_id": self.chat.chat_id, "content": "", "is_finish": True, **summary})]

    def error_frame(self, err: Exception) -> bytes:
        body = err.body() if isinstance(err, AppError) else APP_ERRORS.internal(self.chat.record.log_request_id).body()
        return sse("ai_chat_error", body)


async def start(services: Services, caller: Caller, body: dict[str, Any], endpoint: str, ip: str, *, stream: bool):
    chat = await prepare(services, caller, body, endpoint, ip)
    if stream:
        return await open_stream(chat)
    return await complete(chat)
