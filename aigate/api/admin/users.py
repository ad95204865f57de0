"""/api/apps/{app_id}/users: an operator's view of one app's end users, and erasure.

The view reads what the App API wrote (balances, ledger, chats, AI requests, usage log
totals) without changing it; balances are shown as stored (recovery is applied when the
user next calls). Credit quantities are JSON numbers (a balance with at most its asset's
``precision`` decimals, ledger amounts exact to the millionth); money amounts are decimal
strings so they stay exact. Open holds of usage-based calls are listed with their lease;
a ledger ``settle`` entry carries the call's actual ``charge``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.admin.access import may_see_bodies
from aigate.api.admin.checks import require_app
from aigate.api.admin.common import ERROR_RESPONSES, Envelope, ServicesDep, not_found, ok
from aigate.clock import iso_ms
from aigate.config.schema import AssetCfg, Strict
from aigate.engine.metering import SCALE, render
from aigate.store import tables as t
from aigate.store.sinks import current_rollups
from aigate.store.user_erase import erase_user

router = APIRouter(prefix="/apps/{app_id}/users", tags=["users"], responses=ERROR_RESPONSES)

UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:@|-]{1,128}$", description="end-user id")]
Page = Annotated[int, Query(ge=1)]
PerPage = Annotated[int, Query(ge=1, le=1000)]
LATEST = 5  # chats and AI requests shown in the user view
LEDGER_IN_VIEW = 20


class UserSummary(Strict):
    user_id: str
    created_at: str


class UserPage(Strict):
    users: list[UserSummary]
    total: int


class UserAsset(Strict):
    """Seed 002's asset object; ``has_policy`` is false once the policy was deleted."""

    name: str
    quantity: int | float
    type: str
    recoverable: bool
    recovery_period: int
    recovery_quantity: int | float
    last_recovery_time: str
    valid_seconds: int
    has_policy: bool
    precision: int = 0
    held: int | float = 0  # reserved by running usage-based calls (already out of quantity)


class LedgerEntry(Strict):
    id: int
    asset: str
    delta: int | float
    balance_after: int | float
    reason: str  # initial|reserve|refund|settle|release|expired|grant|recovery|adjust
    charge: int | float | None = None  # settle: the call's actual charge
    request_id: str | None
    idempotency_key: str | None
    created_at: str
    note: str | None = None


class HoldEntry(Strict):
    """A usage-based call's hold, open while the call runs (or until its lease lapses)."""

    request_id: str
    asset: str
    amount: int | float
    holder: str
    created_at: str
    lease_until: str


class LedgerPage(Strict):
    ledger: list[LedgerEntry]
    total: int


class ChatSummary(Strict):
    chat_id: str
    strategy: str
    title: str
    created_at: str
    updated_at: str


class Chats(Strict):
    count: int
    latest: list[ChatSummary]


class RequestSummary(Strict):
    request_id: str
    module: str
    strategy: str
    platform: str
    status: str
    error: str
    from_appserver: bool
    created_at: str
    updated_at: str
    credits: dict | None = None  # what the call cost: {asset, charge[, hold]}


class Requests(Strict):
    count: int
    latest: list[RequestSummary]


class UsageTotals(Strict):
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    used_amount: str


class UserView(Strict):
    app_id: str
    user_id: str
    created_at: str  # empty when the user row is not written yet
    assets: list[UserAsset]
    holds: list[HoldEntry]
    ledger: list[LedgerEntry]
    chats: Chats
    ai_requests: Requests
    usage: UsageTotals


def _amount(value) -> str:
    return format(Decimal(str(value or 0)).normalize(), "f")


def _mine(table, app_id: str, user_id: str):
    return (table.c.app_id == app_id) & (table.c.user_id == user_id)


async def _count(conn: AsyncConnection, table, app_id: str, user_id: str) -> int:
    query = select(func.count()).select_from(table).where(_mine(table, app_id, user_id))
    return (await conn.execute(query)).scalar_one()


async def _assets(conn: AsyncConnection, app_id: str, user_id: str) -> list[UserAsset]:
    ua, ap = t.user_assets, t.asset_policies
    rows = await conn.execute(
        select(ua, ap.c.spec)
        .select_from(ua.outerjoin(ap, (ap.c.app_id == ua.c.app_id) & (ap.c.name == ua.c.name)))
        .where(_mine(ua, app_id, user_id))
        .order_by(ua.c.name)
    )
    held = dict(
        (
            await conn.execute(
                select(t.asset_holds.c.asset, func.sum(t.asset_holds.c.amount_micros))
                .where(_mine(t.asset_holds, app_id, user_id))
                .group_by(t.asset_holds.c.asset)
            )
        ).all()
    )
    out = []
    for r in rows:
        policy = AssetCfg.model_validate(r.spec) if r.spec else AssetCfg(name=r.name, type="", precision=6)
        out.append(
            UserAsset(
                name=r.name,
                quantity=render(r.quantity_micros, policy.precision),
                type=policy.type,
                recoverable=policy.recoverable,
                recovery_period=policy.recovery_period,
                recovery_quantity=_exact(policy.recovery_quantity * SCALE),
                last_recovery_time=iso_ms(r.last_recovery_ms),
                valid_seconds=policy.valid_seconds,
                has_policy=r.spec is not None,
                precision=policy.precision,
                held=_exact(held.get(r.name) or 0),
            )
        )
    return out


def _exact(amount_micros) -> int | float:
    return render(int(amount_micros), 6)


async def _holds(conn: AsyncConnection, app_id: str, user_id: str) -> list[HoldEntry]:
    h = t.asset_holds
    rows = await conn.execute(select(h).where(_mine(h, app_id, user_id)).order_by(h.c.created_ms))
    return [
        HoldEntry(
            request_id=r.request_id,
            asset=r.asset,
            amount=_exact(r.amount_micros),
            holder=r.holder,
            created_at=iso_ms(r.created_ms),
            lease_until=iso_ms(r.lease_until_ms),
        )
        for r in rows
    ]


async def _ledger(conn: AsyncConnection, app_id: str, user_id: str, limit: int, offset: int = 0) -> list[LedgerEntry]:
    lg = t.asset_ledger
    rows = await conn.execute(
        select(lg).where(_mine(lg, app_id, user_id)).order_by(lg.c.id.desc()).limit(limit).offset(offset)
    )
    return [
        LedgerEntry(
            id=r.id,
            asset=r.asset,
            delta=_exact(r.delta_micros),
            balance_after=_exact(r.balance_micros),
            reason=r.reason,
            request_id=r.request_id,
            idempotency_key=r.idempotency_key,
            created_at=iso_ms(r.created_ms),
            note=r.note,
            charge=None if r.charge_micros is None else _exact(r.charge_micros),
        )
        for r in rows
    ]


async def _chats(conn: AsyncConnection, app_id: str, user_id: str) -> Chats:
    c = t.chats
    rows = await conn.execute(select(c).where(_mine(c, app_id, user_id)).order_by(c.c.updated_ms.desc()).limit(LATEST))
    latest = [
        ChatSummary(
            chat_id=r.chat_id,
            strategy=r.strategy,
            title=r.title,
            created_at=iso_ms(r.created_ms),
            updated_at=iso_ms(r.updated_ms),
        )
        for r in rows
    ]
    return Chats(count=await _count(conn, c, app_id, user_id), latest=latest)


async def _requests(conn: AsyncConnection, app_id: str, user_id: str) -> Requests:
    ar = t.ai_requests
    rows = await conn.execute(
        select(
            ar.c.request_id,
            ar.c.module,
            ar.c.strategy,
            ar.c.platform,
            ar.c.status,
            ar.c.error,
            ar.c.from_appserver,
            ar.c.created_ms,
            ar.c.updated_ms,
            ar.c.credits,
        )
        .where(_mine(ar, app_id, user_id))
        .order_by(ar.c.created_ms.desc(), ar.c.request_id.desc())
        .limit(LATEST)
    )
    latest = [
        RequestSummary(
            request_id=str(r.request_id),
            module=r.module,
            strategy=r.strategy,
            platform=r.platform,
            status=r.status,
            error=r.error or "",
            from_appserver=r.from_appserver,
            created_at=iso_ms(r.created_ms),
            updated_at=iso_ms(r.updated_ms),
            credits=r.credits,
        )
        for r in rows
    ]
    return Requests(count=await _count(conn, ar, app_id, user_id), latest=latest)


async def _usage(conn: AsyncConnection, app_id: str, user_id: str) -> UsageTotals:
    """Summed from the per-user daily rollup the writer keeps (never a scan of the log)."""
    d = t.user_usage_daily
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(d.c.requests), 0),
                func.coalesce(func.sum(d.c.errors), 0),
                func.coalesce(func.sum(d.c.input_tokens), 0),
                func.coalesce(func.sum(d.c.output_tokens), 0),
                func.coalesce(func.sum(d.c.total_tokens), 0),
                func.sum(d.c.used_amount),
            ).where((d.c.app_id == app_id) & (d.c.user_id == user_id))
        )
    ).one()
    return UsageTotals(
        requests=row[0],
        errors=row[1],
        input_tokens=row[2],
        output_tokens=row[3],
        total_tokens=row[4],
        used_amount=_amount(row[5]),
    )


@router.get("", summary="List an app's end users, newest first", response_model=Envelope[UserPage])
async def list_users(app_id: str, services: ServicesDep, page: Page = 1, per_page: PerPage = 20):
    u = t.users
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        total = (await conn.execute(select(func.count()).select_from(u).where(u.c.app_id == app_id))).scalar_one()
        rows = await conn.execute(
            select(u)
            .where(u.c.app_id == app_id)
            .order_by(u.c.created_ms.desc(), u.c.user_id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        users = [UserSummary(user_id=r.user_id, created_at=iso_ms(r.created_ms)) for r in rows]
    return ok(UserPage(users=users, total=total))


@router.get(
    "/{user_id}", summary="One end user: assets, ledger, chats, AI requests, usage", response_model=Envelope[UserView]
)
async def get_user(app_id: str, user_id: UserId, services: ServicesDep, request: Request):
    await current_rollups(services.engine)  # the usage totals are a rollup
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        created = (
            await conn.execute(select(t.users.c.created_ms).where(_mine(t.users, app_id, user_id)))
        ).scalar_one_or_none()
        view = UserView(
            app_id=app_id,
            user_id=user_id,
            created_at=iso_ms(created),
            assets=await _assets(conn, app_id, user_id),
            holds=await _holds(conn, app_id, user_id),
            ledger=await _ledger(conn, app_id, user_id, LEDGER_IN_VIEW),
            chats=await _chats(conn, app_id, user_id),
            ai_requests=await _requests(conn, app_id, user_id),
            usage=await _usage(conn, app_id, user_id),
        )
    # A user exists once anything of theirs was written (the users row may still be queued).
    if created is None and not (
        view.assets or view.ledger or view.chats.count or view.ai_requests.count or view.usage.requests
    ):
        raise not_found(f"unknown user '{user_id}' in app '{app_id}'")
    if not may_see_bodies(request):  # a viewer sees no chat content (titles are user text)
        latest = [c.model_copy(update={"title": ""}) for c in view.chats.latest]
        view = view.model_copy(update={"chats": view.chats.model_copy(update={"latest": latest})})
    return ok(view)


@router.get(
    "/{user_id}/ledger", summary="One end user's asset ledger, newest first", response_model=Envelope[LedgerPage]
)
async def get_ledger(app_id: str, user_id: UserId, services: ServicesDep, page: Page = 1, per_page: PerPage = 20):
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
        total = await _count(conn, t.asset_ledger, app_id, user_id)
        entries = await _ledger(conn, app_id, user_id, per_page, (page - 1) * per_page)
    return ok(LedgerPage(ledger=entries, total=total))


@router.delete(
    "/{user_id}", summary="Erase an end user's content (billing totals kept)", response_model=Envelope[dict[str, int]]
)
async def delete_user(app_id: str, user_id: UserId, services: ServicesDep):
    """Deletes chats, AI requests, balances, counters and stored bodies; usage log and
    ledger rows keep their amounts under an ``erased:<hex>`` marker. Idempotent: erasing
    an unknown user returns zero counts."""
    async with services.engine.connect() as conn:
        await require_app(conn, app_id)
    await services.writer.flush()  # rows of this user still queued here land first, then go
    return ok(await erase_user(services.engine, app_id, user_id))
