"""``POST .../ai/ai_request`` (SPEC §5.5): run a strategy of any module.

resolve strategy → build the upstream request → reserve limit and cost → call platforms
(retry/fallback) → refund on failure → write the usage log row and the AI request record.

Which path a strategy takes:

* ``video`` strategies, and any strategy whose platforms include an ``http_job`` one,
  are async jobs (``aigate.engine.jobs``): the record comes back at once as ``pending``
  or ``queueing``;
* ``image`` / ``embedding`` / ``audio`` run on OpenAI-format platforms (``openai``,
  ``azure_openai``, ``openai_compatible``) and ``chat`` on every chat platform; the
  call completes here and the final record is returned.

The upstream body of image, embedding, audio and job strategies is the strategy's
``request`` template rendered with ``parameters`` (a bare ``"{{ .x }}"`` keeps the
value's type) plus ``model`` (the platform's name for it); the configuration requires
that template for every module but chat.

Audio (text to speech) answers with bytes, not JSON: the record's ``custom_response`` is
``{"audio_base64": ..., "content_type": ...}`` (plus any configured fields), and its
``response`` — which the usage log also keeps — is a small JSON document describing the
audio (``object``, ``model``, ``content_type``, ``bytes``), never the audio itself.

Chat strategies run as one single-shot exchange (no chat history is read or saved):
the messages are the rendered ``system_prompt``, then ``parameters.messages`` (OpenAI
format) or, when the client sends none, the ``messages`` of the strategy's ``request``
template rendered with ``parameters``. ``custom_response`` fields are evaluated over the
answer in OpenAI ``chat.completion`` shape, whatever the platform's wire format; without
configured fields it is ``{"content": "<the reply>"}``. ``response`` is the upstream's
raw body.

The record of a sync call is written with a group commit (``durable``), so a GET right
after the POST finds it; rejected calls (bad input, limits, upstream failure) are
recorded as ``failed`` and answered with the error, whose message names the request_id.
The lifecycle (reserve, route, settle or release, records) is ``aigate.engine.calls``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from aigate.auth.caller import Caller
from aigate.config.schema import StrategyCfg
from aigate.engine import jobs, metering, routing
from aigate.engine.ai_requests import custom_response, record_json
from aigate.engine.calls import Call, CreditMeter, app_record
from aigate.engine.chat_input import validate_messages
from aigate.engine.prompts import render_request, render_text
from aigate.engine.upstream_errors import APP_ERRORS
from aigate.errors import AppError, invalid, not_found
from aigate.providers import openai
from aigate.providers.base import ChatRequest, Platform, Usage
from aigate.providers.registry import CHAT_TYPES, JOB_TYPES, OPENAI_FORMAT, chat_provider
from aigate.services import Services


@dataclass(slots=True)
class Outcome:
    raw: bytes | str  # the record's ``response`` (and the log's response body)
    usage: Usage
    custom: dict[str, Any] | None


Runner = Callable[[Services, StrategyCfg, Platform, str, Any], Awaitable[Outcome]]


def parse_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = body.get("strategy")
    if not isinstance(name, str) or not name:
        raise invalid("strategy: required, a non-empty string")
    parameters = body.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise invalid("parameters: must be an object")
    return name, parameters


def resolve(caller: Caller, name: str) -> StrategyCfg:
    strategy = caller.app.strategies.get(name)
    if strategy is None or not strategy.enabled:
        raise not_found(f"strategy: '{name}' not found")
    return strategy


def upstream_body(strategy: StrategyCfg, parameters: dict[str, Any]) -> dict[str, Any]:
    body = render_request(strategy.request or {}, parameters, f"strategy '{strategy.name}' request")
    if not isinstance(body, dict):
        raise AppError("config_invalid", f"strategy '{strategy.name}': request must render to an object")
    return body


def chat_messages(strategy: StrategyCfg, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    where = f"strategy '{strategy.name}'"
    if "messages" in parameters:
        messages = validate_messages(parameters["messages"], "parameters.messages")
    elif strategy.request and "messages" in strategy.request:
        rendered = render_request({"messages": strategy.request["messages"]}, parameters, f"{where} request")
        messages = validate_messages(rendered["messages"], f"strategy '{strategy.name}' request.messages")
    else:
        raise invalid("parameters.messages: required by a chat strategy without request messages")
    system = render_text(strategy.system_prompt, parameters, where)
    return ([{"role": "system", "content": system}] if system else []) + messages


# --- one upstream call per module


async def _image(services: Services, s: StrategyCfg, p: Platform, model: str, body: Any) -> Outcome:
    res = await openai.images(services.http, p, {**body, "model": p.upstream_model(model)})
    return Outcome(res.raw, res.usage, custom_response(s.custom_response, res.data))


async def _embedding(services: Services, s: StrategyCfg, p: Platform, model: str, body: Any) -> Outcome:
    res = await openai.embeddings(services.http, p, {**body, "model": p.upstream_model(model)})
    return Outcome(res.raw, res.usage, custom_response(s.custom_response, res.data))


async def _audio(services: Services, s: StrategyCfg, p: Platform, model: str, body: Any) -> Outcome:
    upstream = p.upstream_model(model)
    res = await openai.speech(services.http, p, {**body, "model": upstream})
    meta = {"object": "audio.speech", "model": upstream, "content_type": res.content_type, "bytes": len(res.content)}
    custom = {
        "audio_base64": base64.b64encode(res.content).decode(),
        "content_type": res.content_type,
        **(custom_response(s.custom_response, meta) or {}),
    }
    return Outcome(orjson.dumps(meta), res.usage, custom)


async def _chat(services: Services, s: StrategyCfg, p: Platform, model: str, messages: Any) -> Outcome:
    req = ChatRequest(
        model=p.upstream_model(model),
        messages=messages,
        params=dict(s.params),
        response_format={"type": "json_object"} if s.response_format == "json_object" else None,
    )
    res = await chat_provider(p.type).chat(services.http, p, req)
    custom = custom_response(s.custom_response, res.openai) or {"content": res.content}
    return Outcome(res.raw, res.usage, custom)


RUNNERS: dict[str, Runner] = {"image": _image, "embedding": _embedding, "audio": _audio, "chat": _chat}


# --- the flow


def _usable(strategy: StrategyCfg, cands: list[tuple[Platform, str]]) -> tuple[bool, list[tuple[Platform, str]]]:
    """(is it an async job, the candidates that can serve it)."""
    is_job = strategy.module == "video" or any(p.type in JOB_TYPES for p, _ in cands)
    if is_job:
        return True, [c for c in cands if c[0].type in JOB_TYPES]
    types = CHAT_TYPES if strategy.module == "chat" else OPENAI_FORMAT
    return False, [c for c in cands if c[0].type in types]


async def submit(services: Services, caller: Caller, body: dict[str, Any], endpoint: str, ip: str) -> dict[str, Any]:
    """Run (or, for async modules, enqueue) the call; the record as seed 000 shows it."""
    # durable: the record is committed before the answer, so a GET right after finds it
    call = Call(services, app_record(services, caller, "", endpoint, ip), APP_ERRORS, durable=True)
    record = call.record
    record.request_body = orjson.dumps(body)
    try:
        async with call.ending():
            name, parameters = parse_body(body)
            record.strategy = name
            strategy = resolve(caller, name)
            record.module, record.model = strategy.module, strategy.model
            is_job, cands = _usable(
                strategy,
                routing.candidates(
                    services.snapshot,
                    routing.cooldowns_of(services),
                    strategy.model,
                    strategy.fallback_models,
                    strategy.platforms,
                ),
            )
            if not cands:
                kind = "http_job" if is_job else f"{strategy.module}-capable"
                raise AppError("config_invalid", f"strategy '{name}': no enabled {kind} platform serves its model")
            prepared: Any = (
                chat_messages(strategy, parameters)
                if strategy.module == "chat" and not is_job
                else upstream_body(strategy, parameters)
            )
            # a job's usage-based hold is the cost's `hold`; it settles when the job ends
            reservation = await metering.reserve_call(
                services,
                caller,
                strategy.name,
                strategy.cost,
                strategy.limit,
                str(record.request_id),
                model=strategy.model,
                messages=prepared if isinstance(prepared, list) else None,
                max_tokens=strategy.params.get("max_tokens"),
            )
            call.meter = CreditMeter(services, reservation)
            if is_job:  # the job records and settles itself when it ends (aigate.engine.jobs)
                accepted = await jobs.enqueue(services, record, strategy, cands, prepared, reservation)
                call.hand_off()
                return accepted

            async def attempt(platform: Platform, model: str) -> Outcome:
                record.model = model
                return await RUNNERS[strategy.module](services, strategy, platform, model, prepared)

            out = await call.route(cands, attempt)
            record.usage, record.response_raw, record.custom_response = out.usage, out.raw, out.custom
            await call.succeed()
    except AppError as exc:
        if exc.error_type == "internal_error":  # its message already names the call
            raise
        raise AppError(
            exc.error_type, f"{exc.message} (request_id: {record.request_id})", exc.status, exc.headers
        ) from None
    assert call.ai_row is not None  # written by succeed()
    return record_json(call.ai_row)
