"""Admin API routes the web console needs: operators, the audit log, credit adjustments,
template previews, a platform test call and the playground.

The playground and the platform test make real upstream calls (they cost money), so they
are admin-only, like every route not listed in ``access.VIEWER_READS``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy import delete, func, select

from aigate.api.admin.access import Principal, client_ip
from aigate.api.admin.common import ERROR_RESPONSES, ServicesDep, conflict, invalid, not_found, ok
from aigate.auth import operators as ops
from aigate.auth.caller import Caller
from aigate.clock import iso_ms
from aigate.config.schema import Strict
from aigate.engine import chat, metering
from aigate.engine.prompts import render_request, render_text
from aigate.errors import AppError
from aigate.providers.base import ChatRequest, UpstreamError
from aigate.providers.registry import CHAT_TYPES, chat_provider
from aigate.store import tables as t

router = APIRouter(tags=["console"], responses=ERROR_RESPONSES)

UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="end-user id")]
PLAYGROUND_PREFIX = "console:"


def _principal(request: Request) -> Principal:
    return request.state.principal


# --- who am I, operators


@router.get("/console/whoami", summary="The caller's identity and role")
async def whoami(request: Request):
    p = _principal(request)
    return ok({"actor": p.actor, "operator": p.operator, "role": p.role})


class OperatorCreate(Strict):
    name: str
    password: str
    role: Literal["admin", "viewer"] = "viewer"


class OperatorUpdate(Strict):
    password: str | None = None
    role: Literal["admin", "viewer"] | None = None


@router.get("/operators", summary="List operators (never their passwords)")
async def list_operators(services: ServicesDep):
    o = t.operators.c
    async with services.engine.connect() as conn:
        rows = await conn.execute(select(o.name, o.role, o.created_ms, o.updated_ms).order_by(o.name))
        return ok(
            [
                {"name": r.name, "role": r.role, "created_at": iso_ms(r.created_ms), "updated_at": iso_ms(r.updated_ms)}
                for r in rows
            ]
        )


@router.post("/operators", summary="Create an operator", status_code=201)
async def create_operator(body: OperatorCreate, services: ServicesDep):
    errors = ops.check_fields(body.name, body.password, body.role)
    if errors:
        raise invalid(errors)
    async with services.engine.begin() as conn:
        if await ops.get(conn, body.name) is not None:
            raise conflict(f"name: operator '{body.name}' exists")
        op = await ops.create(conn, body.name, body.password, body.role)
    return ok({"name": op.name, "role": op.role})


@router.patch("/operators/{name}", summary="Change an operator's role or password (ends their sessions)")
async def update_operator(name: str, body: OperatorUpdate, request: Request, services: ServicesDep):
    errors = ops.check_fields(password=body.password)
    if errors:
        raise invalid(errors)
    me = _principal(request)
    async with services.engine.begin() as conn:
        current = await ops.get(conn, name)
        if current is None:
            raise not_found(f"unknown operator '{name}'")
        if body.role is not None and body.role != current.role:
            if me.operator == name:
                raise HTTPException(403, "role: no operator can change their own role")
            if current.role == "admin" and await ops.admin_count(conn) <= 1:
                raise HTTPException(409, "role: the last admin cannot be demoted")
        await ops.change(conn, name, password=body.password, role=body.role)
    return ok({"name": name, "role": body.role or current.role})


@router.delete("/operators/{name}", summary="Delete an operator (ends their sessions)")
async def delete_operator(name: str, request: Request, services: ServicesDep):
    async with services.engine.begin() as conn:
        current = await ops.get(conn, name)
        if current is None:
            raise not_found(f"unknown operator '{name}'")
        if _principal(request).operator == name:
            raise HTTPException(403, "name: no operator can delete their own account")
        if current.role == "admin" and await ops.admin_count(conn) <= 1:
            raise HTTPException(409, "role: the last admin cannot be deleted")
        await conn.execute(delete(t.operators).where(t.operators.c.name == name))
        await conn.execute(delete(t.console_sessions).where(t.console_sessions.c.operator == name))
    return ok({"name": name})


# --- audit


@router.get("/audit", summary="The audit log of writes, newest first (secrets masked)")
async def list_audit(
    services: ServicesDep, page: Annotated[int, Query(ge=1)] = 1, per_page: Annotated[int, Query(ge=1, le=200)] = 50
):
    a = t.audit_log.c
    async with services.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(t.audit_log))).scalar_one()
        rows = await conn.execute(
            select(t.audit_log).order_by(a.id.desc()).limit(per_page).offset((page - 1) * per_page)
        )
        entries = [
            {
                "id": r.id,
                "created_at": iso_ms(r.created_ms),
                "actor": r.actor,
                "action": r.action,
                "object": r.object,
                "status": r.status,
                "before": r.before,
                "after": r.after,
            }
            for r in rows
        ]
    return ok({"entries": entries, "total": total})


# --- credits


class Adjustment(Strict):
    delta: int = Field(ge=-(2**40), le=2**40)
    reason: str = Field(min_length=1, max_length=200)
    idempotency_key: str = Field(min_length=1, max_length=200)


@router.post(
    "/apps/{app_id}/users/{user_id}/assets/{asset}/adjust",
    summary="Grant (delta > 0) or deduct (delta < 0) credits with a reason, once per key",
)
async def adjust_asset(app_id: str, user_id: UserId, asset: str, body: Adjustment, services: ServicesDep):
    if body.delta == 0:
        raise invalid("delta: must not be 0")
    app = services.snapshot.apps.get(app_id)
    if app is None:
        raise not_found(f"unknown app '{app_id}'")
    policy = app.assets.get(asset)
    if policy is None:
        raise not_found(f"asset: unknown asset '{asset}' in app '{app_id}'")
    try:
        applied, balance = await metering.adjust(
            services, app_id, user_id, policy, body.delta, body.reason, body.idempotency_key
        )
    except AppError as exc:
        raise HTTPException(exc.status, exc.message) from None
    return ok({"applied": applied, "quantity": balance, "asset": asset})


# --- template preview


class Preview(Strict):
    template: Any  # a system prompt (text) or an instruction's messages / a request template (JSON)
    parameters: dict[str, Any] = {}


@router.post("/apps/{app_id}/preview", summary="Render a prompt template against sample parameters")
async def preview(app_id: str, body: Preview, services: ServicesDep):
    if app_id not in services.snapshot.apps:
        raise not_found(f"unknown app '{app_id}'")
    try:
        if isinstance(body.template, str):
            rendered: Any = render_text(body.template, body.parameters, "the preview")
        else:
            rendered = render_request({"t": body.template}, body.parameters, "the preview")["t"]
    except AppError as exc:
        raise invalid(exc.message) from None
    return ok({"rendered": rendered})


# --- platform test


class PlatformTest(Strict):
    model: str = ""


@router.post("/platforms/{platform_id}/test", summary="One real upstream call: status, latency and error")
async def test_platform(platform_id: str, services: ServicesDep, body: PlatformTest | None = None):
    platform = services.snapshot.platforms.get(platform_id)
    if platform is None:
        raise not_found(f"unknown platform '{platform_id}'")
    if platform.type not in CHAT_TYPES:
        raise invalid(f"type: a '{platform.type}' platform has no chat call to test")
    model = (body.model if body else "") or (platform.models[0] if platform.models else "")
    req = ChatRequest(
        model=platform.upstream_model(model), messages=[{"role": "user", "content": "ping"}], params={"max_tokens": 8}
    )
    started = time.perf_counter()
    try:
        result = await chat_provider(platform.type).chat(services.http, platform, req)
        outcome = {"ok": True, "status": 200, "error": "", "reply": result.content[:200]}
    except UpstreamError as exc:
        outcome = {"ok": False, "status": exc.status, "error": exc.message[:500], "reply": ""}
    outcome.update(platform=platform_id, model=model, latency_ms=round((time.perf_counter() - started) * 1000))
    return ok(outcome)


# --- playground


class PlaygroundChat(Strict):
    app_id: str
    strategy: str
    user: str = Field(default="", max_length=40, pattern=r"^[A-Za-z0-9_.:-]*$")
    parameters: dict[str, Any] = {}
    messages: list[dict[str, Any]] = Field(min_length=1)
    chat_id: str = ""


def _sse(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.post("/playground/chat", summary="Chat as a console test user (billed and logged like any call)")
async def playground_chat(body: PlaygroundChat, request: Request, services: ServicesDep):
    """Streams the App API's ``ai_chat_msg`` events, after a ``playground`` event with the
    rendered system prompt. The test user's id is ``console:<user>`` (default: the
    operator's name), and the usage log row's endpoint is ``/api/playground/chat``."""
    app = services.snapshot.apps.get(body.app_id)
    if app is None:
        raise invalid(f"app_id: unknown app '{body.app_id}'")
    strategy = app.strategies.get(body.strategy)
    if strategy is None:
        raise invalid(f"strategy: unknown strategy '{body.strategy}'")
    principal = _principal(request)
    user_id = PLAYGROUND_PREFIX + (body.user or principal.operator or "admin")
    try:
        system = render_text(strategy.system_prompt, body.parameters, f"strategy '{strategy.name}'")
    except AppError as exc:
        raise invalid(exc.message) from None
    caller = Caller(app=app, user_id=user_id, from_appserver=True)
    payload = {"strategy": body.strategy, "parameters": body.parameters, "messages": body.messages}
    if body.chat_id:
        payload["chat_id"] = body.chat_id
    ip = client_ip(request)
    stream = await start_playground_chat(services, caller, payload, ip)

    async def events():
        yield _sse("playground", {"system_prompt": system, "user_id": user_id, "model": strategy.model})
        async for chunk in stream:
            yield chunk

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


async def start_playground_chat(services, caller: Caller, payload: dict, ip: str):
    """The one call into the engine's chat flow (streamed)."""
    try:
        return await chat.start(services, caller, payload, "/api/playground/chat", ip, stream=True)
    except AppError as exc:
        raise HTTPException(exc.status, exc.message) from None
