"""/api/apps: tenants.

Creating an app accepts the same document as one entry of the file's ``apps:`` list
(strategies, assets, keys included) and runs the file's checks on it. The user-token
secret is generated when left out and is shown in the clear only in the creation
response; afterwards it is masked (set a new one with PUT/PATCH to rotate it).

The SPEC §10 settings (``cors``, ``user_tokens``, ``attestation``, ``rate_limits``,
``previous_user_token_secrets``) are shown under ``client`` with every secret masked, and
PUT/PATCH replace each one given; the file's checks run on them (an (issuer, audience)
pair another app uses is a 400). A masked secret sent back as GET showed it keeps the
stored one (an identity provider's is matched by its issuer and audience), so a client
can edit a list without ever holding its secrets.

DELETE disables the app (every key and token of it stops working at once; data kept,
reversible with ``PATCH {"enabled": true}``). ``DELETE ?purge=true`` also removes its
configuration rows (keys, relay tokens, strategies, instructions, asset policies); its
users' data and usage logs stay until erased per user. An app that the YAML file
declares is re-created from the file on the next start.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.admin.checks import platform_cfgs
from aigate.api.admin.common import (
    ERROR_RESPONSES,
    Envelope,
    ServicesDep,
    config_change,
    conflict,
    invalid,
    mask,
    not_found,
    object_errors,
    ok,
    validation_messages,
)
from aigate.auth.keys import new_key
from aigate.clock import iso_ms, now_ms
from aigate.config.apply import apply_app
from aigate.config.loader import app_errors, client_trust_errors, issuer_pair_errors
from aigate.config.schema import (
    AppCfg,
    AttestationCfg,
    ClientTrustCfg,
    CorsCfg,
    PreviousSecretCfg,
    RateLimitsCfg,
    Strict,
    UserTokenIssuerCfg,
)
from aigate.store import tables as t

router = APIRouter(prefix="/apps", tags=["apps"], responses=ERROR_RESPONSES)

# Configuration rows an app owns (removed by a purge).
OWNED = (t.server_keys, t.relay_tokens, t.strategies, t.instructions, t.asset_policies)


def _secret_min_length() -> int:
    """The file's rule for the user-token secret, so both surfaces accept the same values."""
    field = AppCfg.model_fields["user_token_secret"]
    return next((m.min_length for m in field.metadata if hasattr(m, "min_length")), 32)


SECRET_MIN = _secret_min_length()


class AppCreate(AppCfg):
    # generated when absent; a pydantic field override, which mypy takes for a plain attribute
    user_token_secret: str | None = Field(default=None, min_length=SECRET_MIN)  # type: ignore[assignment]


class IssuerUpdate(UserTokenIssuerCfg):
    # a masked secret (as GET shows it) stands for the stored one; checked in full after that
    secret: str | None = None


class AttestationUpdate(AttestationCfg):
    secret: str | None = None


class PreviousSecretUpdate(PreviousSecretCfg):
    secret: str = Field(min_length=1)


class AppUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None
    user_token_secret: str | None = Field(default=None, min_length=SECRET_MIN)
    # SPEC §10: each one given replaces the app's current setting (null removes cors/attestation)
    previous_user_token_secrets: list[PreviousSecretUpdate] | None = None
    cors: CorsCfg | None = None
    user_tokens: list[IssuerUpdate] | None = None
    attestation: AttestationUpdate | None = None
    rate_limits: RateLimitsCfg | None = None


CLIENT_FIELDS = tuple(ClientTrustCfg.model_fields)


def masked_client(client: ClientTrustCfg) -> dict:
    """The app's client settings as the Admin API shows them: every secret masked."""
    data = client.model_dump(mode="json")
    for item in (*data["previous_user_token_secrets"], *data["user_tokens"], data["attestation"] or {}):
        if item.get("secret"):
            item["secret"] = mask(item["secret"])
    return data


class AppView(Strict):
    id: str
    name: str
    enabled: bool
    user_token_secret: str  # masked, except in the creation response
    strategies: list[str]
    instructions: list[str]
    assets: list[str]
    server_keys: list[str]
    relay_tokens: list[str]
    updated_at: str
    client: dict  # cors, user_tokens, attestation, rate_limits, previous_user_token_secrets (masked)


async def _view(conn: AsyncConnection, app_id: str, *, reveal: bool = False) -> AppView:
    row = (await conn.execute(select(t.apps).where(t.apps.c.id == app_id))).first()
    if row is None:
        raise not_found(f"unknown app '{app_id}'")
    names = {}
    for table in OWNED:
        found = await conn.execute(select(table.c.name).where(table.c.app_id == app_id).order_by(table.c.name))
        names[table.name] = [r.name for r in found]
    return AppView(
        id=row.id,
        name=row.name,
        enabled=row.enabled,
        user_token_secret=row.user_token_secret if reveal else mask(row.user_token_secret),
        strategies=names["strategies"],
        instructions=names["instructions"],
        assets=names["asset_policies"],
        server_keys=names["server_keys"],
        relay_tokens=names["relay_tokens"],
        updated_at=iso_ms(row.updated_ms),
        client=masked_client(ClientTrustCfg.model_validate(row.client_trust or {})),
    )


async def _issuer_errors(conn: AsyncConnection, app_id: str, client: ClientTrustCfg) -> list[str]:
    """The app's user-token issuers against every other app's: no (issuer, audience) pair twice."""
    others = await conn.execute(select(t.apps.c.id, t.apps.c.client_trust).where(t.apps.c.id != app_id))
    apps = [(f"apps[{r.id}]", r.id, ClientTrustCfg.model_validate(r.client_trust or {}).user_tokens) for r in others]
    errors = issuer_pair_errors([*apps, ("", app_id, client.user_tokens)])
    return [e.removeprefix(".") for e in errors if not e.startswith("apps[")]


@router.get("", summary="List apps", response_model=Envelope[list[AppView]])
async def list_apps(services: ServicesDep):
    async with services.engine.connect() as conn:
        ids = [r.id for r in await conn.execute(select(t.apps.c.id).order_by(t.apps.c.id))]
        return ok([await _view(conn, app_id) for app_id in ids])


@router.post(
    "", summary="Create an app (user_token_secret shown once)", status_code=201, response_model=Envelope[AppView]
)
async def create_app(body: AppCreate, services: ServicesDep):
    secret = body.user_token_secret or new_key("uts-")
    app = AppCfg.model_validate({**body.model_dump(), "user_token_secret": secret})
    async with config_change(services) as conn:
        errors = app_errors("", app, await platform_cfgs(conn))
        errors += await _issuer_errors(conn, app.id, app.client_trust())
        if errors:
            raise invalid(object_errors(errors))
        if (await conn.execute(select(t.apps.c.id).where(t.apps.c.id == app.id))).first():
            raise conflict(f"app '{app.id}' already exists")
        await apply_app(conn, app, now_ms())
        view = await _view(conn, app.id, reveal=True)
    return ok(view)


@router.get("/{app_id}", summary="Get an app", response_model=Envelope[AppView])
async def get_app(app_id: str, services: ServicesDep):
    async with services.engine.connect() as conn:
        return ok(await _view(conn, app_id))


@router.put("/{app_id}", summary="Update an app's name, enabled flag or token secret", response_model=Envelope[AppView])
@router.patch(
    "/{app_id}", summary="Update an app's name, enabled flag or token secret", response_model=Envelope[AppView]
)
async def update_app(app_id: str, body: AppUpdate, services: ServicesDep):
    """Only the fields given change (PUT and PATCH behave the same: an app's other parts
    have their own endpoints)."""
    changes = body.model_dump(exclude_none=True, exclude=set(CLIENT_FIELDS))
    client_changes = {name: getattr(body, name) for name in CLIENT_FIELDS if name in body.model_fields_set}
    async with config_change(services) as conn:
        if client_changes:
            changes["client_trust"] = (await _client_update(conn, app_id, client_changes)).model_dump(mode="json")
        if changes:
            result = await conn.execute(
                update(t.apps).where(t.apps.c.id == app_id).values(**changes, updated_ms=now_ms())
            )
            if result.rowcount == 0:
                raise not_found(f"unknown app '{app_id}'")
        view = await _view(conn, app_id)
    return ok(view)


async def _client_update(conn: AsyncConnection, app_id: str, given: dict) -> ClientTrustCfg:
    row = (await conn.execute(select(t.apps.c.client_trust).where(t.apps.c.id == app_id))).first()
    if row is None:
        raise not_found(f"unknown app '{app_id}'")
    current = ClientTrustCfg.model_validate(row.client_trust or {})
    defaults = {"previous_user_token_secrets": [], "user_tokens": [], "rate_limits": RateLimitsCfg()}
    merged = {
        **{n: getattr(current, n) for n in CLIENT_FIELDS},
        **{n: (_unmasked(n, v, current) if v is not None else defaults.get(n)) for n, v in given.items()},
    }
    try:
        client = ClientTrustCfg.model_validate(merged)
    except ValidationError as exc:
        raise invalid(validation_messages(exc)) from None
    probe = AppCfg.model_construct(**{n: getattr(client, n) for n in CLIENT_FIELDS})
    errors = object_errors(client_trust_errors("", probe)) + await _issuer_errors(conn, app_id, client)
    if errors:
        raise invalid(errors)
    return client


def _unmasked(name: str, value, current: ClientTrustCfg):
    """The given setting as plain data, each masked secret replaced by the stored one it masks."""

    def keep(item, stored: str | None) -> dict:
        data = item.model_dump()
        if stored and data.get("secret") == mask(stored):
            data["secret"] = stored
        return data

    if name == "user_tokens":
        by_pair = {(u.issuer, u.audience): u.secret for u in current.user_tokens}
        return [keep(u, by_pair.get((u.issuer, u.audience))) for u in value]
    if name == "attestation":
        return keep(value, current.attestation.secret if current.attestation else None)
    if name == "previous_user_token_secrets":
        stored = {mask(p.secret): p.secret for p in current.previous_user_token_secrets}
        return [keep(p, stored.get(p.secret)) for p in value]
    return value


@router.delete(
    "/{app_id}", summary="Disable an app, or delete its configuration (purge)", response_model=Envelope[AppView]
)
async def delete_app(
    app_id: str,
    services: ServicesDep,
    purge: Annotated[
        bool, Query(description="also delete keys, tokens, strategies, instructions and asset policies")
    ] = False,
):
    async with config_change(services) as conn:
        await conn.execute(update(t.apps).where(t.apps.c.id == app_id).values(enabled=False, updated_ms=now_ms()))
        view = await _view(conn, app_id)  # 404 for an unknown app
        if purge:
            for table in OWNED:
                await conn.execute(delete(table).where(table.c.app_id == app_id))
            await conn.execute(delete(t.apps).where(t.apps.c.id == app_id))
    return ok(view)
