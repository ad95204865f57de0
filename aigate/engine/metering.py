"""Credits and usage limits: reserve before the upstream call, refund if it fails.

Every change is an atomic conditional statement plus a ledger row in one transaction,
so no interleaving of concurrent requests — on one instance or many sharing a database
— can overspend a balance, exceed a limit or refund twice:

* limit:  ``INSERT .. ON CONFLICT DO UPDATE SET count = count + 1 WHERE count < :limit``
* credit: ``UPDATE user_assets SET quantity = quantity - :cost WHERE .. AND quantity >= :cost``

A failed call gives back both its credits and its slot in the limit period.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.errors import AppError
from aigate.auth.caller import Caller
from aigate.clock import now_ms
from aigate.config.schema import AssetCfg, CostCfg, LimitCfg
from aigate.engine.periods import period_key, recovery_boundary
from aigate.services import Services
from aigate.store import tables as t
from aigate.store.upsert import _insert, insert_ignore

UA = t.user_assets


class _Prepared:
    """Which (app, user, asset) rows this process already created and recovered for the
    current boundary, so the hot path skips those statements. Bounded LRU."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple, int] = OrderedDict()

    def is_ready(self, key: tuple, boundary: int) -> bool:
        got = self._seen.get(key)
        if got is None or got < boundary:
            return False
        self._seen.move_to_end(key)
        return True

    def mark(self, key: tuple, boundary: int) -> None:
        self._seen[key] = boundary
        self._seen.move_to_end(key)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, app_id: str, user_id: str) -> None:
        for key in [k for k in self._seen if k[0] == app_id and k[1] == user_id]:
            del self._seen[key]


def _prepared(services: Services) -> _Prepared:
    found = services.extras.get("prepared_assets")
    if found is None:
        found = services.extras["prepared_assets"] = _Prepared()
    return found


@dataclass(slots=True)
class Reservation:
    app_id: str
    user_id: str
    counter_name: str
    period: str
    request_id: str
    cost: CostCfg | None
    limit: LimitCfg | None
    current_count: int = 0
    current_total_count: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    recovered: dict[str, int | None] = field(default_factory=dict)
    released: bool = False

    @property
    def user_surplus_count(self) -> int:
        if self.limit is None:
            return -1
        return max(self.limit.count - self.current_count, 0)


def _ledger(app_id: str, user_id: str, asset: str, delta: int, balance: int, reason: str,
            ts: int, request_id: str | None = None, key: str | None = None) -> dict[str, Any]:
    return dict(app_id=app_id, user_id=user_id, asset=asset, delta=delta, balance_after=balance,
                reason=reason, request_id=request_id, idempotency_key=key, created_ms=ts)


def _boundary(policy: AssetCfg, ts: int) -> int:
    return recovery_boundary(ts, policy.recovery_period) if policy.recoverable else 0


async def prepare_asset(conn: AsyncConnection, app_id: str, user_id: str, policy: AssetCfg, ts: int) -> None:
    """Create the user's balance on first use, and apply a due recovery. Idempotent."""
    boundary = _boundary(policy, ts)
    where = and_(UA.c.app_id == app_id, UA.c.user_id == user_id, UA.c.name == policy.name)
    created = await conn.execute(
        insert_ignore(conn, UA, ["app_id", "user_id", "name"]).returning(UA.c.quantity),
        [dict(app_id=app_id, user_id=user_id, name=policy.name, quantity=policy.initial_quantity,
              last_recovery_ms=boundary if policy.recoverable else None, updated_ms=ts)],
    )
    if created.first() is not None:
        await conn.execute(insert(t.asset_ledger), [_ledger(
            app_id, user_id, policy.name, policy.initial_quantity, policy.initial_quantity, "initial", ts)])
    elif policy.recoverable:
        # Lock the row (PostgreSQL) so the ledger's delta matches the recovery applied.
        stmt = select(UA.c.quantity, UA.c.last_recovery_ms).where(where)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is not None and (row.last_recovery_ms or 0) < boundary:
            new = max(row.quantity, policy.recovery_quantity)
            await conn.execute(
                update(UA).where(where).values(quantity=new, last_recovery_ms=boundary, updated_ms=ts)
            )
            await conn.execute(insert(t.asset_ledger), [_ledger(
                app_id, user_id, policy.name, new - row.quantity, new, "recovery", ts)])


async def ensure_assets(services: Services, app_id: str, user_id: str, policies, ts: int) -> None:
    """Run ``prepare_asset`` for the balances this process has not prepared for the current
    recovery boundary; marked only after the commit, so a rollback leaves nothing stale."""
    prepared = _prepared(services)
    todo = [p for p in policies if not prepared.is_ready((app_id, user_id, p.name), _boundary(p, ts))]
    if not todo:
        return
    async with services.engine.begin() as conn:
        for policy in todo:
            await prepare_asset(conn, app_id, user_id, policy, ts)
    for policy in todo:
        prepared.mark((app_id, user_id, policy.name), _boundary(policy, ts))


async def _count(conn: AsyncConnection, app_id: str, user_id: str, name: str, period: str,
                 below: int | None) -> int | None:
    """Add one to a counter; with ``below``, only while it is under that value.
    Returns the new count, or None when the limit is reached."""
    stmt = _insert(conn, t.usage_counters).values(
        app_id=app_id, user_id=user_id, strategy=name, period=period, count=1
    )
    c = t.usage_counters.c
    stmt = stmt.on_conflict_do_update(
        index_elements=["app_id", "user_id", "strategy", "period"],
        set_={"count": c.count + 1},
        where=(c.count < below) if below is not None else None,
    ).returning(c.count)
    row = (await conn.execute(stmt)).first()
    return None if row is None else row[0]


async def _balances(conn: AsyncConnection, app_id: str, user_id: str) -> tuple[dict, dict]:
    rows = await conn.execute(
        select(UA.c.name, UA.c.quantity, UA.c.last_recovery_ms).where(
            UA.c.app_id == app_id, UA.c.user_id == user_id)
    )
    balances, recovered = {}, {}
    for name, qty, last in rows:
        balances[name] = qty
        recovered[name] = last
    return balances, recovered


async def reserve(services: Services, caller: Caller, counter_name: str, cost: CostCfg | None,
                  limit: LimitCfg | None, request_id: str) -> Reservation:
    """Take one slot of the limit period and the call's cost, atomically, or raise
    ``limit_exceeded`` / ``insufficient_asset`` having changed nothing."""
    ts = now_ms()
    app, user_id = caller.app, caller.user_id
    period = period_key(limit.period if limit else "day", ts)
    res = Reservation(app.id, user_id, counter_name, period, request_id, cost, limit)
    await ensure_assets(services, app.id, user_id, app.assets.values(), ts)
    async with services.engine.begin() as conn:
        count = await _count(conn, app.id, user_id, counter_name, period, limit.count if limit else None)
        if count is None:
            raise AppError("limit_exceeded", f"strategy '{counter_name}': limit of {limit.count} per {limit.period} reached")
        res.current_count = count
        res.current_total_count = await _count(conn, app.id, user_id, counter_name, "total", None) or 0
        if cost is not None and cost.per_request > 0:
            row = (await conn.execute(
                update(UA)
                .where(UA.c.app_id == app.id, UA.c.user_id == user_id, UA.c.name == cost.asset,
                       UA.c.quantity >= cost.per_request)
                .values(quantity=UA.c.quantity - cost.per_request, updated_ms=ts)
                .returning(UA.c.quantity)
            )).first()
            if row is None:
                if not (await _balances(conn, app.id, user_id))[0]:
                    # the balances were erased behind this process's back: prepare anew
                    _prepared(services).forget(app.id, user_id)
                raise AppError("insufficient_asset",
                               f"asset '{cost.asset}': balance is below the cost of {cost.per_request}")
            await conn.execute(insert(t.asset_ledger), [_ledger(
                app.id, user_id, cost.asset, -cost.per_request, row[0], "reserve", ts, request_id)])
        res.balances, res.recovered = await _balances(conn, app.id, user_id)
    return res


async def release(services: Services, res: Reservation) -> None:
    """Give back what ``reserve`` took (the call failed). Runs at most once."""
    if res.released:
        return
    res.released = True
    ts = now_ms()
    c = t.usage_counters.c
    async with services.engine.begin() as conn:
        for period in (res.period, "total"):
            await conn.execute(
                update(t.usage_counters)
                .where(c.app_id == res.app_id, c.user_id == res.user_id, c.strategy == res.counter_name,
                       c.period == period, c.count > 0)
                .values(count=c.count - 1)
            )
        res.current_count -= 1
        res.current_total_count -= 1
        if res.cost is not None and res.cost.per_request > 0:
            row = (await conn.execute(
                update(UA)
                .where(UA.c.app_id == res.app_id, UA.c.user_id == res.user_id, UA.c.name == res.cost.asset)
                .values(quantity=UA.c.quantity + res.cost.per_request, updated_ms=ts)
                .returning(UA.c.quantity)
            )).first()
            if row is not None:
                await conn.execute(insert(t.asset_ledger), [_ledger(
                    res.app_id, res.user_id, res.cost.asset, res.cost.per_request, row[0], "refund", ts,
                    res.request_id)])
                res.balances[res.cost.asset] = row[0]


async def grant(services: Services, caller: Caller, asset: str, quantity: int, idempotency_key: str) -> bool:
    """Add purchased credits once per idempotency key; False when the key was already used."""
    ts = now_ms()
    policy = caller.app.assets[asset]
    await ensure_assets(services, caller.app.id, caller.user_id, [policy], ts)
    async with services.engine.connect() as conn:
        async with conn.begin() as tx:
            row = (await conn.execute(
                update(UA)
                .where(UA.c.app_id == caller.app.id, UA.c.user_id == caller.user_id, UA.c.name == asset)
                .values(quantity=UA.c.quantity + quantity, updated_ms=ts)
                .returning(UA.c.quantity)
            )).first()
            entry = await conn.execute(
                insert_ignore(conn, t.asset_ledger, ["app_id", "user_id", "asset", "idempotency_key"])
                .returning(t.asset_ledger.c.id),
                [_ledger(caller.app.id, caller.user_id, asset, quantity, row[0], "grant", ts, None, idempotency_key)],
            )
            if entry.first() is None:  # the key was used before: undo the addition
                await tx.rollback()
                return False
    return True


async def read_assets(services: Services, caller: Caller) -> tuple[dict, dict]:
    await ensure_assets(services, caller.app.id, caller.user_id, caller.app.assets.values(), now_ms())
    async with services.engine.connect() as conn:
        return await _balances(conn, caller.app.id, caller.user_id)


def _iso_seconds(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def assets_json(caller: Caller, balances: dict[str, int], recovered: dict[str, int | None]) -> list[dict]:
    """The user's assets as seed 002's ``asset`` objects."""
    out = []
    for name, policy in caller.app.assets.items():
        out.append({
            "last_recovery_time": _iso_seconds(recovered.get(name)),
            "name": name,
            "quantity": balances.get(name, policy.initial_quantity),
            "recoverable": policy.recoverable,
            "recovery_period": policy.recovery_period,
            "recovery_quantity": policy.recovery_quantity,
            "type": policy.type,
            "valid_seconds": policy.valid_seconds,
        })
    return out
