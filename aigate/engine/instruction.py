"""Instructions (SPEC §5.4): a named single-shot prompt rendered from ``parameters``."""

from __future__ import annotations

from typing import Any

from aigate.auth.caller import Caller
from aigate.config.schema import InstructionCfg, InstructionMessage
from aigate.engine import metering, routing
from aigate.engine.calls import Call, CreditMeter, app_record
from aigate.engine.prompts import render_text
from aigate.engine.upstream_errors import APP_ERRORS
from aigate.errors import invalid, not_found
from aigate.gotemplate import MissingVariable, TemplateError, compile_template
from aigate.providers.base import ChatRequest
from aigate.providers.registry import chat_provider
from aigate.services import Services


def _image_url(source: str, parameters: dict[str, Any]) -> str:
    """Images are optional: a url that renders empty or names an absent variable drops the part."""
    if "{{" not in source:
        return source
    try:
        return compile_template(source).render(parameters).strip()
    except MissingVariable:
        return ""
    except TemplateError as exc:
        raise invalid(f"parameters: cannot render an image url: {exc}") from None


def render_message(msg: InstructionMessage, parameters: dict[str, Any], where: str) -> dict[str, Any]:
    if msg.content is not None:
        return {"role": msg.role, "content": render_text(msg.content, parameters, where)}
    parts: list[dict[str, Any]] = []
    for part in msg.multi_content or []:
        if part.type == "text":
            parts.append({"type": "text", "text": render_text(part.text or "", parameters, where)})
        else:
            url = _image_url(part.image_url.url if part.image_url else "", parameters)
            if url:
                parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": msg.role, "content": parts}


def parse_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise invalid("name: required, a non-empty string")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("parameters: must be an object")
    return name, parameters


async def run_instruction(services: Services, caller: Caller, body: dict[str, Any], endpoint: str, ip: str) -> dict:
    call = Call(services, app_record(services, caller, "chat", endpoint, ip), APP_ERRORS)
    record = call.record
    record.request_body = body
    async with call.ending():
        name, parameters = parse_body(body)
        record.strategy = f"instruction:{name}"
        ins: InstructionCfg | None = caller.app.instructions.get(name)
        if ins is None:
            raise not_found(f"name: instruction '{name}' not found")
        record.model = ins.model
        messages = [render_message(m, parameters, f"instruction '{name}'") for m in ins.messages]
        reservation = await metering.reserve_call(
            services,
            caller,
            record.strategy,
            ins.cost,
            ins.limit,
            str(record.request_id),
            model=ins.model,
            messages=messages,
            max_tokens=ins.max_token,
        )
        call.meter = CreditMeter(services, reservation)

        params: dict[str, Any] = {"max_tokens": ins.max_token, "temperature": ins.temperature}
        fmt = {"type": "json_object"} if ins.response_format == "json_object" else None

        async def attempt(platform, model):
            req = ChatRequest(
                model=platform.upstream_model(model), messages=messages, params=params, response_format=fmt
            )
            return await chat_provider(platform.type).chat(services.http, platform, req)

        cands = routing.candidates(services.snapshot, routing.cooldowns_of(services), ins.model, [], ins.platforms)
        result = await call.route(cands, attempt)
        record.usage, record.response_raw = result.usage, result.raw
        await call.succeed()
    u = result.usage
    return {
        "instruction": {"content": result.content},
        "usage": {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.total_tokens,
        },
    }
