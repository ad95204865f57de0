"""/api/models: model prices (seed 001's price fields). A model without a row is priced
at zero; routing does not depend on this table (platforms list the models they serve)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import delete, select, update

from aigate.api.admin.common import (
    ERROR_RESPONSES,
    Envelope,
    ServicesDep,
    check_name,
    config_change,
    conflict,
    not_found,
    ok,
)
from aigate.clock import now_ms
from aigate.config.apply import dump
from aigate.config.schema import ModelCfg, Price
from aigate.store import tables as t

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)


def _model(row) -> ModelCfg:
    return ModelCfg(name=row.name, price=Price.model_validate(row.price) if row.price else None)


@router.get("", summary="List model prices", response_model=Envelope[list[ModelCfg]])
async def list_models(services: ServicesDep):
    async with services.engine.connect() as conn:
        rows = await conn.execute(select(t.models).order_by(t.models.c.name))
        return ok([_model(r) for r in rows])


@router.post("", summary="Add a model price", status_code=201, response_model=Envelope[ModelCfg])
async def create_model(body: ModelCfg, services: ServicesDep):
    async with config_change(services) as conn:
        found = await conn.execute(select(t.models.c.name).where(t.models.c.name == body.name))
        if found.first() is not None:
            raise conflict(f"model '{body.name}' already exists")
        await conn.execute(
            t.models.insert().values(
                name=body.name, price=dump(body.price) if body.price else None, updated_ms=now_ms()
            )
        )
    return ok(body)


@router.get("/{name:path}", summary="Get a model price", response_model=Envelope[ModelCfg])
async def get_model(name: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        row = (await conn.execute(select(t.models).where(t.models.c.name == name))).first()
    if row is None:
        raise not_found(f"unknown model '{name}'")
    return ok(_model(row))


@router.put("/{name:path}", summary="Replace a model price", response_model=Envelope[ModelCfg])
async def replace_model(name: str, body: ModelCfg, services: ServicesDep):
    check_name(name, body.name)
    async with config_change(services) as conn:
        result = await conn.execute(
            update(t.models)
            .where(t.models.c.name == name)
            .values(price=dump(body.price) if body.price else None, updated_ms=now_ms())
        )
        if result.rowcount == 0:
            raise not_found(f"unknown model '{name}'")
    return ok(body)


@router.delete(
    "/{name:path}",
    summary="Delete a model price (the model is then free)",
    response_model=Envelope[ModelCfg],
)
async def delete_model(name: str, services: ServicesDep):
    async with config_change(services) as conn:
        row = (await conn.execute(select(t.models).where(t.models.c.name == name))).first()
        if row is None:
            raise not_found(f"unknown model '{name}'")
        await conn.execute(delete(t.models).where(t.models.c.name == name))
    return ok(_model(row))
