"""/api/apps/{app_id}/server_keys and /api/apps/{app_id}/relay_tokens.

A key is shown once, in the creation response (generated when not supplied); the
database keeps only its SHA-256 digest and first 8 characters, so lists show the name,
that prefix and the flags. To replace a lost key, delete it and create a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.admin.checks import require_app
from aigate.api.admin.common import (
    ERROR_RESPONSES,
    Envelope,
    ServicesDep,
    config_change,
    conflict,
    not_found,
    ok,
)
from aigate.auth.keys import hash_key, key_prefix, new_key
from aigate.clock import iso_ms, ms_from_datetime, now_ms
from aigate.config.schema import NAME, RelayTokenCfg, Strict
from aigate.services import Services
from aigate.store import tables as t

server_keys = APIRouter(prefix="/apps/{app_id}/server_keys", tags=["server keys"], responses=ERROR_RESPONSES)
relay_tokens = APIRouter(prefix="/apps/{app_id}/relay_tokens", tags=["relay tokens"], responses=ERROR_RESPONSES)


class ServerKeyCreate(Strict):
    name: str = Field(pattern=NAME)
    key: str | None = Field(default=None, min_length=16)  # generated ("ak-...") if absent


class ServerKeyUpdate(Strict):
    enabled: bool


class ServerKeyView(Strict):
    name: str
    prefix: str
    enabled: bool
    created_at: str


class ServerKeyCreated(ServerKeyView):
    key: str  # the only time the key is returned


class RelayTokenCreate(RelayTokenCfg):
    # generated ("sk-...") if absent; a pydantic field override, which mypy takes for a plain attribute
    key: str | None = Field(default=None, min_length=16)  # type: ignore[assignment]


class RelayTokenSettings(Strict):
    """Everything of a relay token but its name and key."""

    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    spend_limit: Decimal | None = Field(default=None, ge=0)
    expires_at: datetime | None = None
    enabled: bool = True


class RelayTokenView(RelayTokenSettings):
    id: int  # the usage log's token_id
    name: str
    prefix: str
    created_at: str


class RelayTokenCreated(RelayTokenView):
    key: str  # the only time the key is returned


async def _row(conn: AsyncConnection, table, app_id: str, name: str):
    await require_app(conn, app_id)
    row = (await conn.execute(select(table).where((table.c.app_id == app_id) & (table.c.name == name)))).first()
    if row is None:
        raise not_found(f"unknown {table.name[:-1].replace('_', ' ')} '{name}' in app '{app_id}'")
    return row


async def _refuse_duplicate(conn: AsyncConnection, table, app_id: str, name: str) -> None:
    await require_app(conn, app_id)
    found = await conn.execute(select(table.c.id).where((table.c.app_id == app_id) & (table.c.name == name)))
    if found.first() is not None:
        raise conflict(f"'{name}' already exists in app '{app_id}'")


# --- server keys


def _server_view(row) -> ServerKeyView:
    return ServerKeyView(name=row.name, prefix=row.key_prefix, enabled=row.enabled, created_at=iso_ms(row.created_ms))


@server_keys.get("", summary="List an app's server keys (never the keys)", response_model=Envelope[list[ServerKeyView]])
async def list_server_keys(app_id: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        rows = await conn.execute(
            select(t.server_keys).where(t.server_keys.c.app_id == app_id).order_by(t.server_keys.c.name)
        )
        return ok([_server_view(r) for r in rows])


@server_keys.post(
    "", summary="Create a server key (returned once)", status_code=201, response_model=Envelope[ServerKeyCreated]
)
async def create_server_key(app_id: str, body: ServerKeyCreate, services: ServicesDep):
    key = body.key or new_key("ak-")
    async with config_change(services) as conn:
        await _refuse_duplicate(conn, t.server_keys, app_id, body.name)
        await conn.execute(
            t.server_keys.insert().values(
                app_id=app_id,
                name=body.name,
                key_hash=hash_key(key),
                key_prefix=key_prefix(key),
                enabled=True,
                created_ms=now_ms(),
            )
        )
        row = await _row(conn, t.server_keys, app_id, body.name)
    return ok(ServerKeyCreated(**_server_view(row).model_dump(), key=key))


@server_keys.patch("/{name}", summary="Enable or disable a server key", response_model=Envelope[ServerKeyView])
async def update_server_key(app_id: str, name: str, body: ServerKeyUpdate, services: ServicesDep):
    async with config_change(services) as conn:
        await _row(conn, t.server_keys, app_id, name)
        await conn.execute(
            update(t.server_keys)
            .where((t.server_keys.c.app_id == app_id) & (t.server_keys.c.name == name))
            .values(enabled=body.enabled)
        )
        row = await _row(conn, t.server_keys, app_id, name)
    return ok(_server_view(row))


@server_keys.delete("/{name}", summary="Delete a server key", response_model=Envelope[ServerKeyView])
async def delete_server_key(app_id: str, name: str, services: ServicesDep):
    async with config_change(services) as conn:
        row = await _row(conn, t.server_keys, app_id, name)
        await conn.execute(delete(t.server_keys).where(t.server_keys.c.id == row.id))
    return ok(_server_view(row))


# --- relay tokens


def _relay_view(row) -> RelayTokenView:
    expires = datetime.fromtimestamp(row.expires_ms / 1000, tz=UTC) if row.expires_ms else None
    return RelayTokenView(
        id=row.id,
        name=row.name,
        prefix=row.key_prefix,
        models=list(row.models or []),
        rpm=row.rpm,
        tpm=row.tpm,
        spend_limit=row.spend_limit,
        expires_at=expires,
        enabled=row.enabled,
        created_at=iso_ms(row.created_ms),
    )


def _relay_columns(settings: dict) -> dict:
    out = dict(settings)
    if "expires_at" in out:
        expires = out.pop("expires_at")
        out["expires_ms"] = ms_from_datetime(expires) if expires else None
    return out


@relay_tokens.get(
    "", summary="List an app's relay tokens (never the keys)", response_model=Envelope[list[RelayTokenView]]
)
async def list_relay_tokens(app_id: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        rows = await conn.execute(
            select(t.relay_tokens).where(t.relay_tokens.c.app_id == app_id).order_by(t.relay_tokens.c.name)
        )
        return ok([_relay_view(r) for r in rows])


@relay_tokens.post(
    "", summary="Create a relay token (key returned once)", status_code=201, response_model=Envelope[RelayTokenCreated]
)
async def create_relay_token(app_id: str, body: RelayTokenCreate, services: ServicesDep):
    key = body.key or new_key("sk-")
    settings = body.model_dump(exclude={"name", "key"})
    async with config_change(services) as conn:
        await _refuse_duplicate(conn, t.relay_tokens, app_id, body.name)
        await conn.execute(
            t.relay_tokens.insert().values(
                app_id=app_id,
                name=body.name,
                key_hash=hash_key(key),
                key_prefix=key_prefix(key),
                created_ms=now_ms(),
                **_relay_columns(settings),
            )
        )
        row = await _row(conn, t.relay_tokens, app_id, body.name)
    return ok(RelayTokenCreated(**_relay_view(row).model_dump(), key=key))


@relay_tokens.get("/{name}", summary="Get a relay token (never the key)", response_model=Envelope[RelayTokenView])
async def get_relay_token(app_id: str, name: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        return ok(_relay_view(await _row(conn, t.relay_tokens, app_id, name)))


async def _update_relay(services: Services, app_id: str, name: str, settings: dict) -> RelayTokenView:
    async with config_change(services) as conn:
        await _row(conn, t.relay_tokens, app_id, name)
        if settings:
            await conn.execute(
                update(t.relay_tokens)
                .where((t.relay_tokens.c.app_id == app_id) & (t.relay_tokens.c.name == name))
                .values(**_relay_columns(settings))
            )
        row = await _row(conn, t.relay_tokens, app_id, name)
    return _relay_view(row)


@relay_tokens.put(
    "/{name}", summary="Replace a relay token's settings (key unchanged)", response_model=Envelope[RelayTokenView]
)
async def replace_relay_token(app_id: str, name: str, body: RelayTokenSettings, services: ServicesDep):
    return ok(await _update_relay(services, app_id, name, body.model_dump()))


@relay_tokens.patch("/{name}", summary="Change some settings of a relay token", response_model=Envelope[RelayTokenView])
async def patch_relay_token(app_id: str, name: str, body: RelayTokenSettings, services: ServicesDep):
    """Only the fields present in the body change; ``null`` clears a limit."""
    return ok(await _update_relay(services, app_id, name, body.model_dump(exclude_unset=True)))


@relay_tokens.delete("/{name}", summary="Delete a relay token", response_model=Envelope[RelayTokenView])
async def delete_relay_token(app_id: str, name: str, services: ServicesDep):
    async with config_change(services) as conn:
        row = await _row(conn, t.relay_tokens, app_id, name)
        await conn.execute(delete(t.relay_tokens).where(t.relay_tokens.c.id == row.id))
    return ok(_relay_view(row))
