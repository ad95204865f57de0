"""/api/platforms: upstream accounts. API keys are write-only: every response masks them.

A platform that strategies or instructions name cannot be deleted (409 naming them);
disable it instead (``PATCH {"enabled": false}``), which keeps every reference valid and
takes it out of routing everywhere within a second.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy import delete, select, update

from aigate.api.admin.checks import app_objects, dependent_errors, platform_cfgs
from aigate.api.admin.common import (
    ERROR_RESPONSES,
    Envelope,
    ServicesDep,
    check_name,
    config_change,
    conflict,
    invalid,
    mask,
    not_found,
    object_errors,
    ok,
    validate_as,
)
from aigate.clock import now_ms
from aigate.config.apply import dump
from aigate.config.loader import platform_errors
from aigate.config.schema import PlatformCfg
from aigate.services import Services
from aigate.store import tables as t

router = APIRouter(prefix="/platforms", tags=["platforms"], responses=ERROR_RESPONSES)


class PlatformView(PlatformCfg):
    number: int  # stable integer id: the usage log's ``channel``


def _view(cfg: PlatformCfg, number: int) -> PlatformView:
    return PlatformView(
        **{**dump(cfg), "api_key": mask(cfg.api_key), "api_keys": [mask(k) for k in cfg.api_keys], "number": number}
    )


def _keep_masked_keys(body: dict[str, Any], current: PlatformCfg) -> dict[str, Any]:
    """Masked keys sent back (a GET's ``api_keys``) stand for the stored keys they mask."""
    if "api_keys" not in body or not isinstance(body["api_keys"], list):
        return body
    stored = {mask(k): k for k in current.all_keys()}
    return {**body, "api_keys": [stored.get(k, k) if isinstance(k, str) else k for k in body["api_keys"]]}


def _cfg(row) -> PlatformCfg:
    return PlatformCfg.model_validate({**row.spec, "enabled": row.enabled})


async def _row(conn, platform_id: str):
    row = (await conn.execute(select(t.platforms).where(t.platforms.c.id == platform_id))).first()
    if row is None:
        raise not_found(f"unknown platform '{platform_id}'")
    return row


async def _check(conn, cfg: PlatformCfg) -> None:
    errors = platform_errors("", cfg)
    if errors:
        raise invalid(object_errors(errors))
    broken = await dependent_errors(conn)
    if broken:
        raise conflict("; ".join(broken))


async def _save(services: Services, platform_id: str, cfg: PlatformCfg) -> PlatformView:
    async with config_change(services) as conn:
        row = await _row(conn, platform_id)
        await conn.execute(
            update(t.platforms)
            .where(t.platforms.c.id == platform_id)
            .values(type=cfg.type, spec=dump(cfg), enabled=cfg.enabled, updated_ms=now_ms())
        )
        await _check(conn, cfg)
    return _view(cfg, row.number)


@router.get("", summary="List platforms (API keys masked)", response_model=Envelope[list[PlatformView]])
async def list_platforms(services: ServicesDep):
    async with services.engine.connect() as conn:
        rows = await conn.execute(select(t.platforms).order_by(t.platforms.c.number))
        return ok([_view(_cfg(r), r.number) for r in rows])


@router.post("", summary="Add a platform", status_code=201, response_model=Envelope[PlatformView])
async def create_platform(body: PlatformCfg, services: ServicesDep):
    async with config_change(services) as conn:
        if body.id in await platform_cfgs(conn):
            raise conflict(f"platform '{body.id}' already exists")
        result = await conn.execute(
            t.platforms.insert()
            .values(id=body.id, type=body.type, spec=dump(body), enabled=body.enabled, updated_ms=now_ms())
            .returning(t.platforms.c.number)
        )
        number = result.scalar_one()
        await _check(conn, body)
    return ok(_view(body, number))


@router.get("/{platform_id}", summary="Get a platform (API key masked)", response_model=Envelope[PlatformView])
async def get_platform(platform_id: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        row = await _row(conn, platform_id)
    return ok(_view(_cfg(row), row.number))


@router.put("/{platform_id}", summary="Replace a platform", response_model=Envelope[PlatformView])
async def replace_platform(platform_id: str, body: PlatformCfg, services: ServicesDep):
    """The whole definition is replaced. An ``api_key`` equal to the masked value a GET
    returned keeps the stored key, so a read-edit-write round trip never loses it."""
    check_name(platform_id, body.id, "id")
    async with services.engine.connect() as conn:
        current = _cfg(await _row(conn, platform_id))
    if body.api_key and body.api_key == mask(current.api_key):
        body = body.model_copy(update={"api_key": current.api_key})
    body = body.model_copy(update=_keep_masked_keys({"api_keys": body.api_keys}, current))
    return ok(await _save(services, platform_id, body))


@router.patch("/{platform_id}", summary="Change some fields of a platform", response_model=Envelope[PlatformView])
async def patch_platform(
    platform_id: str,
    changes: Annotated[dict[str, Any], Body(examples=[{"enabled": False}, {"priority": 5}])],
    services: ServicesDep,
):
    """Top-level fields given replace the stored ones; the rest are kept (the key too)."""
    async with services.engine.connect() as conn:
        current = _cfg(await _row(conn, platform_id))
    if changes.get("api_key") == mask(current.api_key):
        changes = {k: v for k, v in changes.items() if k != "api_key"}
    merged = {**dump(current), **_keep_masked_keys(changes, current)}
    check_name(platform_id, merged.get("id"), "id")
    cfg = validate_as(PlatformCfg, merged)
    return ok(await _save(services, platform_id, cfg))


@router.delete("/{platform_id}", summary="Delete a platform no strategy uses", response_model=Envelope[PlatformView])
async def delete_platform(platform_id: str, services: ServicesDep):
    async with config_change(services) as conn:
        row = await _row(conn, platform_id)
        strategies, instructions = await app_objects(conn)
        users = [f"apps[{a}].strategies[{s.name}]" for a, s in strategies if platform_id in s.platforms] + [
            f"apps[{a}].instructions[{i.name}]" for a, i in instructions if platform_id in i.platforms
        ]
        if users:
            raise conflict(
                f"platform '{platform_id}' is used by {', '.join(users)}; "
                "disable it (PATCH enabled=false) or change those first"
            )
        await conn.execute(delete(t.platforms).where(t.platforms.c.id == platform_id))
        broken = await dependent_errors(conn)
        if broken:
            raise conflict("; ".join(broken))
    return ok(_view(_cfg(row), row.number))
