"""CRUD for the named objects an app owns as a validated spec: strategies, instructions
and asset policies (/api/apps/{app_id}/<kind>). One router factory, three kinds.

PUT replaces the whole object (fields left out take their defaults, as in the file);
PATCH replaces only the top-level fields it names. Each object is checked exactly as
the file checks it, against the platforms and the app's asset policies inside the same
transaction; a change others depend on (deleting an asset policy a strategy spends) is
refused with 409 naming the dependants.
"""
# No ``from __future__ import annotations``: FastAPI must see the body model of each kind,
# which is a closure variable, not a module global.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel
from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.admin.checks import asset_names, dependent_errors, platform_cfgs, require_app
from aigate.api.admin.common import (
    ERROR_RESPONSES,
    Envelope,
    ServicesDep,
    check_name,
    config_change,
    conflict,
    invalid,
    not_found,
    object_errors,
    ok,
    validate_as,
)
from aigate.clock import now_ms
from aigate.config.apply import dump
from aigate.config.loader import instruction_errors, strategy_errors
from aigate.config.schema import AssetCfg, InstructionCfg, StrategyCfg
from aigate.services import Services
from aigate.store import tables as t

Check = Callable[[str, Any, dict, set[str]], list[str]]


@dataclass(frozen=True)
class Kind:
    singular: str
    plural: str
    table: Table
    model: type[BaseModel]
    check: Check | None  # the file loader's cross-reference check, if the kind has one
    extra_columns: Callable[[Any], dict[str, Any]] = lambda spec: {}
    has_enabled: bool = False  # the table keeps ``enabled`` beside the spec


STRATEGIES = Kind(
    "strategy",
    "strategies",
    t.strategies,
    StrategyCfg,
    strategy_errors,
    extra_columns=lambda s: {"module": s.module, "enabled": s.enabled},
    has_enabled=True,
)
INSTRUCTIONS = Kind("instruction", "instructions", t.instructions, InstructionCfg, instruction_errors)
ASSETS = Kind("asset policy", "assets", t.asset_policies, AssetCfg, None)


def _load(kind: Kind, row) -> Any:
    spec = {**row.spec, "enabled": row.enabled} if kind.has_enabled else row.spec
    return kind.model.model_validate(spec)


def _where(kind: Kind, app_id: str, name: str | None = None):
    cond = kind.table.c.app_id == app_id
    return cond if name is None else cond & (kind.table.c.name == name)


async def _get(conn: AsyncConnection, kind: Kind, app_id: str, name: str) -> Any:
    await require_app(conn, app_id)
    row = (await conn.execute(select(kind.table).where(_where(kind, app_id, name)))).first()
    if row is None:
        raise not_found(f"unknown {kind.singular} '{name}' in app '{app_id}'")
    return _load(kind, row)


async def _validate(conn: AsyncConnection, kind: Kind, app_id: str, spec: Any) -> None:
    if kind.check is not None:
        errors = kind.check("", spec, await platform_cfgs(conn), await asset_names(conn, app_id))
        if errors:
            raise invalid(object_errors(errors))
    else:
        broken = await dependent_errors(conn, app_id)
        if broken:
            raise conflict("; ".join(broken))


def _values(kind: Kind, spec: Any) -> dict[str, Any]:
    return {"spec": dump(spec), "updated_ms": now_ms(), **kind.extra_columns(spec)}


async def _replace(services: Services, kind: Kind, app_id: str, name: str, spec: Any) -> Any:
    async with config_change(services) as conn:
        await _get(conn, kind, app_id, name)
        await conn.execute(update(kind.table).where(_where(kind, app_id, name)).values(**_values(kind, spec)))
        await _validate(conn, kind, app_id, spec)
    return spec


def spec_router(kind: Kind) -> APIRouter:
    router = APIRouter(prefix=f"/apps/{{app_id}}/{kind.plural}", tags=[kind.plural], responses=ERROR_RESPONSES)
    model = kind.model  # a class known only at run time: the annotations using it need ignores
    one = Envelope[model]  # type: ignore[valid-type]

    @router.get("", summary=f"List the {kind.plural} of an app", response_model=Envelope[list[model]])  # type: ignore[valid-type]
    async def list_all(app_id: str, services: ServicesDep):
        async with services.engine.connect() as conn:
            await require_app(conn, app_id)
            rows = await conn.execute(select(kind.table).where(_where(kind, app_id)).order_by(kind.table.c.name))
            return ok([_load(kind, r) for r in rows])

    @router.post("", summary=f"Create a {kind.singular}", status_code=201, response_model=one)
    async def create(app_id: str, body: model, services: ServicesDep):  # type: ignore[valid-type]
        async with config_change(services) as conn:
            await require_app(conn, app_id)
            found = await conn.execute(
                select(kind.table.c.name).where(_where(kind, app_id, body.name))  # type: ignore[attr-defined]
            )
            if found.first() is not None:
                raise conflict(f"{kind.singular} '{body.name}' already exists in app '{app_id}'")  # type: ignore[attr-defined]
            await conn.execute(
                kind.table.insert().values(app_id=app_id, name=body.name, **_values(kind, body))  # type: ignore[attr-defined]
            )
            await _validate(conn, kind, app_id, body)
        return ok(body)

    @router.get("/{name}", summary=f"Get a {kind.singular}", response_model=one)
    async def get_one(app_id: str, name: str, services: ServicesDep):
        async with services.engine.connect() as conn:
            return ok(await _get(conn, kind, app_id, name))

    @router.put("/{name}", summary=f"Replace a {kind.singular}", response_model=one)
    async def replace(app_id: str, name: str, body: model, services: ServicesDep):  # type: ignore[valid-type]
        check_name(name, body.name)  # type: ignore[attr-defined]
        return ok(await _replace(services, kind, app_id, name, body))

    @router.patch("/{name}", summary=f"Change some fields of a {kind.singular}", response_model=one)
    async def patch(
        app_id: str,
        name: str,
        changes: Annotated[dict[str, Any], Body(description="top-level fields to replace")],
        services: ServicesDep,
    ):
        async with services.engine.connect() as conn:
            current = await _get(conn, kind, app_id, name)
        merged = {**dump(current), **changes}
        check_name(name, merged.get("name"))
        return ok(await _replace(services, kind, app_id, name, validate_as(model, merged)))

    @router.delete("/{name}", summary=f"Delete a {kind.singular}", response_model=one)
    async def remove(app_id: str, name: str, services: ServicesDep):
        async with config_change(services) as conn:
            current = await _get(conn, kind, app_id, name)
            await conn.execute(delete(kind.table).where(_where(kind, app_id, name)))
            broken = await dependent_errors(conn, app_id)
            if broken:
                raise conflict(f"{kind.singular} '{name}' is still used: " + "; ".join(broken))
        return ok(current)

    return router


routers = [spec_router(STRATEGIES), spec_router(INSTRUCTIONS), spec_router(ASSETS)]
