"""Operating many platforms: platform and key health, webhook deliveries.

- ``GET /api/health/platforms``: every platform's state (``up``, ``cooldown``, ``down``)
  and each key's (``disabled`` when the upstream refused it), as this instance sees the
  shared state; keys are shown masked.
- ``GET /api/apps/{app_id}/webhooks`` (secrets masked) and ``PUT`` (replaces the app's
  endpoints; a masked secret sent back keeps the stored one), checked like the file
  (a private address without ``allow_private`` is a 400 naming the field).
- ``GET /api/webhooks/deliveries?app_id=&status=&page=&per_page=``: deliveries, newest
  first (``status=failed`` lists the ones that gave up).
- ``POST /api/webhooks/deliveries/{msg_id}/resend``: a new round of attempts for one
  delivery, with the same ``webhook-id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select

from aigate.api.admin.checks import require_app
from aigate.api.admin.common import (
    ERROR_RESPONSES,
    ServicesDep,
    config_change,
    invalid,
    mask,
    not_found,
    ok,
    page_bounds,
    validation_messages,
)
from aigate.clock import now_ms
from aigate.config.apply import dump
from aigate.config.schema import WebhookCfg
from aigate.engine import health, webhooks
from aigate.store import tables as t

router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)

W = t.webhook_deliveries
H = t.app_webhooks


def _masked(cfg: WebhookCfg) -> dict[str, Any]:
    return {**dump(cfg), "secret": mask(cfg.secret)}


@router.get("/apps/{app_id}/webhooks", summary="An app's webhook endpoints (secrets masked)")
async def list_webhooks(app_id: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        rows = (await conn.execute(select(H).where(H.c.app_id == app_id).order_by(H.c.id))).all()
    return ok([_masked(WebhookCfg.model_validate(r.spec)) for r in rows])


@router.put("/apps/{app_id}/webhooks", summary="Replace an app's webhook endpoints")
async def replace_webhooks(app_id: str, body: Annotated[list[dict[str, Any]], Body()], services: ServicesDep):
    async with config_change(services) as conn:
        await require_app(conn, app_id)
        rows = (await conn.execute(select(H).where(H.c.app_id == app_id))).all()
        stored = {r.url: WebhookCfg.model_validate(r.spec).secret for r in rows}
        endpoints: list[WebhookCfg] = []
        errors: list[str] = []
        for i, raw in enumerate(body):
            secret = stored.get(raw.get("url")) if isinstance(raw, dict) else None
            if secret is not None and raw.get("secret") == mask(secret):
                raw = {**raw, "secret": secret}  # the masked value a GET returned
            try:
                endpoints.append(WebhookCfg.model_validate(raw))
            except ValidationError as exc:
                errors += [f"[{i}].{m}" for m in validation_messages(exc)]
        urls = [e.url for e in endpoints]
        errors += [f"url: {u} is listed twice" for u in sorted({u for u in urls if urls.count(u) > 1})]
        if errors:
            raise invalid(errors)
        await conn.execute(delete(H).where(H.c.app_id == app_id))
        if endpoints:
            await conn.execute(
                insert(H), [dict(app_id=app_id, url=e.url, spec=dump(e), updated_ms=now_ms()) for e in endpoints]
            )
    return ok([_masked(e) for e in endpoints])


@router.get("/health/platforms", summary="Platform and key health (keys masked)")
async def platform_health(services: ServicesDep):
    view = health.board_of(services).view()
    for item in view:
        platform = services.snapshot.platforms.get(item["id"])
        masks = {health.fingerprint(k): mask(k) for k in (platform.api_keys if platform else ())}
        for key in item["keys"]:
            key["key"] = masks.get(key["fingerprint"], "")
    return ok(view)


def _delivery(row) -> dict[str, Any]:
    d = dict(row._mapping)
    d.pop("claimed_by", None)
    d.pop("claim_until_ms", None)
    return d


@router.get("/webhooks/deliveries", summary="Webhook deliveries, newest first")
async def list_deliveries(
    services: ServicesDep,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 20,
):
    query = select(W)
    count = select(func.count()).select_from(W)
    for cond in ([W.c.app_id == app_id] if app_id else []) + ([W.c.status == status] if status else []):
        query, count = query.where(cond), count.where(cond)
    limit, offset = page_bounds(page, per_page)
    async with services.engine.connect() as conn:
        rows = (await conn.execute(query.order_by(W.c.id.desc()).offset(offset).limit(limit))).all()
        total = (await conn.execute(count)).scalar_one()
    return ok({"items": [_delivery(r) for r in rows], "total": total})


@router.post("/webhooks/deliveries/{msg_id}/resend", summary="Send a delivery again (same webhook-id)")
async def resend_delivery(msg_id: str, services: ServicesDep):
    row = await webhooks.resend(services, msg_id)
    if row is None:
        raise not_found(f"unknown webhook delivery '{msg_id}'")
    row.pop("claimed_by", None)
    row.pop("claim_until_ms", None)
    return ok(row)
