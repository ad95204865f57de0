"""What each console page shows: the same functions the Admin API routes use, called in
process (so a page and the API never disagree). Rollups only: no page scans the log,
except a log search with a keyword, which says so."""

from __future__ import annotations

import base64
import secrets
from typing import Any, Literal, cast, get_args
from urllib.parse import urlencode

import orjson
from fastapi import HTTPException
from sqlalchemy import select
from starlette.requests import Request

from aigate.api.admin import apps as apps_api
from aigate.api.admin import console_api
from aigate.api.admin import keys as keys_api
from aigate.api.admin import logs as logs_api
from aigate.api.admin import models as models_api
from aigate.api.admin import operations as operations_api
from aigate.api.admin import platforms as platforms_api
from aigate.api.admin import users as users_api
from aigate.auth.sessions import Session
from aigate.config.apply import dump
from aigate.config.schema import WebhookEvent
from aigate.store import tables as t
from aigate.store.logs_query import detail_query, joined_to_json

Data = dict[str, Any]


def _app_ids(services) -> list[str]:
    return sorted(services.snapshot.apps)


def _pick_app(request: Request, services) -> str:
    ids = _app_ids(services)
    wanted = request.query_params.get("app", "")
    return wanted if wanted in ids else (ids[0] if ids else "")


def _declared(services) -> dict[str, set]:
    """Objects the YAML file declares (marked in the console: a changed file wins for them)."""
    cfg = services.config
    out: dict[str, set] = {"platforms": {p.id for p in cfg.platforms}, "models": {m.name for m in cfg.models}}
    for app in cfg.apps:
        out.setdefault("strategies", set()).update((app.id, s.name) for s in app.strategies)
        out.setdefault("instructions", set()).update((app.id, i.name) for i in app.instructions)
        out.setdefault("server_keys", set()).update((app.id, k.name) for k in app.server_keys)
        out.setdefault("relay_tokens", set()).update((app.id, r.name) for r in app.relay_tokens)
    return out


def _int(request: Request, name: str, lo: int = 0, hi: int = 2**62) -> int | None:
    raw = request.query_params.get(name, "")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: must be a whole number") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name}: must be between {lo} and {hi}")
    return value


async def dashboard(request: Request, services, session: Session) -> Data:
    return {
        "apps": _app_ids(services),
        "app": request.query_params.get("app", ""),
        "range": request.query_params.get("range", "24h"),
    }


async def logs(request: Request, services, session: Session) -> Data:
    q = request.query_params
    code_type = q.get("code_type") or None
    if code_type not in (None, "all", "success", "error"):
        raise HTTPException(400, "code_type: must be all, success or error")
    params = logs_api.LogParams(
        page=_int(request, "page", 1, 1_000_000),
        per_page=_int(request, "per_page", 1, 100),
        model_name=q.get("model_name") or None,
        token_name=q.get("token_name") or None,
        start_timestamp=_int(request, "start_timestamp"),
        end_timestamp=_int(request, "end_timestamp"),
        code_type=cast(Literal["all", "success", "error"] | None, code_type),
        request_id=(q.get("request_id") or None),
        user=(q.get("user") or None),
        channel=_int(request, "channel", 0, 2**31 - 1),
        code=_int(request, "code", 0, 2**31 - 1),
        keyword=(q.get("keyword") or None),
    )
    group = q.get("group") or None
    # the log-search pool: custom plans for every search (the App API's pool caches generic ones)
    engine = logs_api.log_reader(services)
    data = await logs_api._search(engine, params, params.filter(group), token_names=bool(group))
    pages = max(1, -(-data["total"] // params.per_page))
    export = "/api/logs/export?" + urlencode({k: v for k, v in q.items() if v and k not in ("page", "per_page")})
    return {"result": data, "params": params, "pages": pages, "apps": _app_ids(services), "export_url": export}


async def log_detail(request: Request, services, session: Session) -> Data:
    rows = await logs_api._fetch(logs_api.log_reader(services), detail_query(request.path_params["log_id"], None))
    if not rows:
        raise HTTPException(404, f"log {request.path_params['log_id']} not found")
    row = joined_to_json(rows[0])
    return {
        "log": row,
        "bodies": session.role == "admin",
        "metadata_json": orjson.dumps(row["metadata"], option=orjson.OPT_INDENT_2).decode(),
    }


async def strategies(request: Request, services, session: Session) -> Data:
    app_id = _pick_app(request, services)
    app = services.snapshot.apps.get(app_id)
    declared = _declared(services)
    return {
        "apps": _app_ids(services),
        "app": app_id,
        "strategies": sorted(app.strategies.values(), key=lambda s: s.name) if app else [],
        "instructions": sorted(app.instructions.values(), key=lambda i: i.name) if app else [],
        "declared_strategies": {n for a, n in declared.get("strategies", ()) if a == app_id},
        "declared_instructions": {n for a, n in declared.get("instructions", ()) if a == app_id},
    }


async def spec_edit(request: Request, services, session: Session) -> Data:
    app_id, kind, name = (request.path_params[k] for k in ("app_id", "kind", "name"))
    app = services.snapshot.apps.get(app_id)
    if app is None or kind not in ("strategy", "instruction"):
        raise HTTPException(404, "unknown app or kind")
    specs = app.strategies if kind == "strategy" else app.instructions
    spec = specs.get(name)
    if spec is None and name != "_new":
        raise HTTPException(404, f"unknown {kind} '{name}'")
    doc = dump(spec) if spec is not None else {}
    return {
        "app": app_id,
        "kind": kind,
        "name": name,
        "spec": doc,
        "is_new": spec is None,
        "messages_json": orjson.dumps(
            doc.get("messages", [{"role": "system", "content": ""}]), option=orjson.OPT_INDENT_2
        ).decode(),
        "params_json": orjson.dumps(doc.get("params", {})).decode(),
        "request_json": orjson.dumps(doc["request"], option=orjson.OPT_INDENT_2).decode() if doc.get("request") else "",
        "non_chat": kind == "strategy" and doc.get("module", "chat") != "chat",
        "assets": sorted(app.assets),
        "models": sorted(services.snapshot.prices),
        "platform_ids": sorted(services.snapshot.platforms),
        "declared": (app_id, name)
        in _declared(services).get("strategies" if kind == "strategy" else "instructions", set()),
    }


async def platforms(request: Request, services, session: Session) -> Data:
    declared = _declared(services)
    return {
        "platforms": (await platforms_api.list_platforms(services))["data"],
        "models": (await models_api.list_models(services))["data"],
        "declared_platforms": declared["platforms"],
        "declared_models": declared["models"],
    }


async def health(request: Request, services, session: Session) -> Data:
    return {"health": (await operations_api.platform_health(services))["data"]}


DELIVERY_STATUSES = ("pending", "delivered", "failed")
WEBHOOK_EVENTS = get_args(WebhookEvent)


async def webhooks(request: Request, services, session: Session) -> Data:
    q = request.query_params
    status = q.get("status") or None
    if status not in (None, *DELIVERY_STATUSES):
        raise HTTPException(400, "status: must be pending, delivered or failed")
    app_id = q.get("app") or None
    if app_id is not None and app_id not in services.snapshot.apps:
        raise HTTPException(400, f"app: unknown app '{app_id}'")
    page = _int(request, "page", 1, 1_000_000) or 1
    per_page = 50
    found = (
        await operations_api.list_deliveries(
            services,
            app_id=app_id,
            status=cast(Literal["pending", "delivered", "failed"] | None, status),
            page=page,
            per_page=per_page,
        )
    )["data"]
    endpoints = {a: (await operations_api.list_webhooks(a, services))["data"] for a in ([app_id] if app_id else [])}
    return {
        "apps": _app_ids(services),
        "app": app_id or "",
        "endpoints": endpoints,
        "events": WEBHOOK_EVENTS,
        # offered in the new-endpoint form: the receiver needs it before the first delivery
        "new_secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "status_filter": status or "",
        "statuses": DELIVERY_STATUSES,
        "deliveries": found["items"],
        "total": found["total"],
        "page": page,
        "pages": max(1, -(-found["total"] // per_page)),
    }


async def clients(request: Request, services, session: Session) -> Data:
    app_id = _pick_app(request, services)
    if not app_id:
        return {"apps": [], "app": ""}
    client = (await apps_api.get_app(app_id, services))["data"].client
    return {"apps": _app_ids(services), "app": app_id, "client": client}


async def users(request: Request, services, session: Session) -> Data:
    app_id = _pick_app(request, services)
    user_id = request.query_params.get("user", "").strip()
    out: Data = {
        "apps": _app_ids(services),
        "app": app_id,
        "user_id": user_id,
        "view": None,
        "assets": sorted(services.snapshot.apps[app_id].assets) if app_id else [],
    }
    if not user_id:
        out["recent"] = (await users_api.list_users(app_id, services, 1, 20))["data"] if app_id else None
        return out
    try:
        out["view"] = (await users_api.get_user(app_id, user_id, services, request))["data"]
    except HTTPException as exc:
        out["error"] = str(exc.detail)
        return out
    if session.role == "admin":  # viewers see no chat content
        out["chats"] = await _chat_messages(services, app_id, user_id, [c.chat_id for c in out["view"].chats.latest])
    return out


async def _chat_messages(services, app_id: str, user_id: str, chat_ids: list[str]) -> dict[str, list]:
    x = t.chat_exchanges.c
    found: dict[str, list] = {c: [] for c in chat_ids}
    if not chat_ids:
        return found
    async with services.engine.connect() as conn:
        rows = await conn.execute(
            select(x.chat_id, x.messages)
            .where((x.app_id == app_id) & (x.user_id == user_id) & x.chat_id.in_(chat_ids))
            .order_by(x.id)
            .limit(500)
        )
        for r in rows:
            messages = orjson.loads(r.messages) if isinstance(r.messages, (str, bytes)) else r.messages
            found[r.chat_id].extend(messages)
    return found


async def keys(request: Request, services, session: Session) -> Data:
    app_id = _pick_app(request, services)
    if not app_id:
        return {"apps": [], "app": ""}
    declared = _declared(services)
    return {
        "apps": _app_ids(services),
        "app": app_id,
        "app_view": (await apps_api.get_app(app_id, services))["data"],
        "server_keys": (await keys_api.list_server_keys(app_id, services))["data"],
        "relay_tokens": (await keys_api.list_relay_tokens(app_id, services))["data"],
        "declared_keys": {n for a, n in declared.get("server_keys", ()) if a == app_id},
        "declared_tokens": {n for a, n in declared.get("relay_tokens", ()) if a == app_id},
    }


async def playground(request: Request, services, session: Session) -> Data:
    choices = {
        a.id: sorted(n for n, s in a.strategies.items() if s.module == "chat" and s.enabled)
        for a in services.snapshot.apps.values()
    }
    return {
        "choices": choices,
        "choices_json": orjson.dumps(choices).decode(),
        "default_user": session.operator or "admin",
    }


async def audit(request: Request, services, session: Session) -> Data:
    page = _int(request, "page", 1, 1_000_000) or 1
    data = (await console_api.list_audit(services, page, 50))["data"]
    for e in data["entries"]:
        e["before_json"] = orjson.dumps(e["before"], option=orjson.OPT_INDENT_2).decode() if e["before"] else ""
        e["after_json"] = orjson.dumps(e["after"], option=orjson.OPT_INDENT_2).decode() if e["after"] else ""
    operators = (await console_api.list_operators(services))["data"]
    return {"audit": data, "page": page, "operators": operators}
