"""Credits and usage limits: reserve before the upstream call, refund if it fails.

Every change is an atomic conditional statement plus a ledger row in one transaction,
so no interleaving of concurrent requests — on one instance or many sharing a database
— can overspend a balance, exceed a limit or refund twice:

* limit:  one counter row per (app, user, strategy) holding the current period's count and
  the all-time total; ``INSERT .. ON CONFLICT DO UPDATE .. WHERE count < :limit`` starts a
  new period or adds one only while under the limit;
* credit: ``UPDATE user_assets SET quantity = quantity - :cost WHERE .. AND quantity >= :cost``.

The SQL is written once (see ``aigate.store.script``) and runs in one round trip. A
failed call gives back both its credits and its slot in the limit period.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aigate.auth.caller import Caller
from aigate.clock import now_ms
from aigate.config.schema import AssetCfg, CostCfg, LimitCfg
from aigate.engine.periods import period_key, recovery_boundary
from aigate.errors import AppError
from aigate.services import Services
from aigate.store.outage import is_outage
from aigate.store.script import run_script

NO_LIMIT = 2**62

COUNT = """
INSERT INTO usage_counters (app_id, user_id, strategy, period, count, total)
VALUES (:app, :user, :strategy, :period, 1, 1)
ON CONFLICT (app_id, user_id, strategy) DO UPDATE SET
    count = CASE WHEN usage_counters.period = excluded.period THEN usage_counters.count + 1 ELSE 1 END,
    total = usage_counters.total + 1,
    period = excluded.period
WHERE usage_counters.period <> excluded.period OR usage_counters.count < :limit
RETURNING count, total"""

UNCOUNT = """
UPDATE usage_counters SET
    count = CASE WHEN period = :period AND count > 0 THEN count - 1 ELSE count END,
    total = total - 1
WHERE app_id = :app AND user_id = :user AND strategy = :strategy AND total > 0"""

TAKE = """
UPDATE user_assets SET quantity = quantity - :amount, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset AND quantity >= :amount
RETURNING quantity"""

ADD = """
UPDATE user_assets SET quantity = quantity + :amount, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset
RETURNING quantity"""

LEDGER = """
INSERT INTO asset_ledger (app_id, user_id, asset, delta, balance_after, reason, request_id,
                          idempotency_key, created_ms)
VALUES (:app, :user, :asset, :delta, :balance, :reason, :request_id, :key, :ts)"""

# A grant's idempotency key is unique per (app, user, asset): a repeat inserts nothing.
LEDGER_ONCE = LEDGER + """
ON CONFLICT (app_id, user_id, asset, idempotency_key) DO NOTHING
RETURNING id"""

CREATE = """
INSERT INTO user_assets (app_id, user_id, name, quantity, last_recovery_ms, updated_ms)
VALUES (:app, :user, :asset, :quantity, :boundary, :ts)
ON CONFLICT (app_id, user_id, name) DO NOTHING
RETURNING quantity"""

BALANCE = """
SELECT quantity, last_recovery_ms FROM user_assets
WHERE app_id = :app AND user_id = :user AND name = :asset"""

RECOVER = """
UPDATE user_assets SET quantity = :quantity, last_recovery_ms = :boundary, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset"""

BALANCES = "SELECT name, quantity, last_recovery_ms FROM user_assets WHERE app_id = :app AND user_id = :user"


class Refused(Exception):
    """Raised inside a script to roll it back; carries the App API error."""

    def __init__(self, error: AppError) -> None:
        self.error = error


class PreparedAssets:
    """Which (app, user, asset) balances this process already created and recovered for
    the current boundary, so the hot path skips those statements. Bounded LRU."""

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


def _prepared(services: Services) -> PreparedAssets:
    if services.prepared_assets is None:
        services.prepared_assets = PreparedAssets()
    return services.prepared_assets


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


def _boundary(policy: AssetCfg, ts: int) -> int | None:
    return recovery_boundary(ts, policy.recovery_period) if policy.recoverable else None


def _ledger(who: dict, asset: str, delta: int, balance: int, reason: str, ts: int,
            request_id: str | None = None, key: str | None = None) -> dict[str, Any]:
    return {**who, "asset": asset, "delta": delta, "balance": balance, "reason": reason,
            "request_id": request_id, "key": key, "ts": ts}


# --- transaction scripts (synchronous; run by aigate.store.script.run_script)


def _prepare_script(db, who: dict, policies: list[AssetCfg], ts: int) -> None:
    """Create balances on first use and apply due recoveries. Idempotent."""
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""  # SQLite's write lock is held
    for policy in policies:
        boundary = _boundary(policy, ts)
        asset = {**who, "asset": policy.name}
        if db.rows(CREATE, {**asset, "quantity": policy.initial_quantity, "boundary": boundary, "ts": ts}):
            db.rows(LEDGER, _ledger(who, policy.name, policy.initial_quantity, policy.initial_quantity,
                                    "initial", ts))
            continue
        if boundary is None:
            continue
        row = db.rows(BALANCE + lock, asset)
        if row and (row[0][1] or 0) < boundary:
            old = row[0][0]
            new = max(old, policy.recovery_quantity)
            db.rows(RECOVER, {**asset, "quantity": new, "boundary": boundary, "ts": ts})
            db.rows(LEDGER, _ledger(who, policy.name, new - old, new, "recovery", ts))


def _reserve_script(db, who: dict, res: Reservation, other_assets: bool, ts: int) -> None:
    limit = res.limit.count if res.limit else NO_LIMIT
    counted = db.rows(COUNT, {**who, "strategy": res.counter_name, "period": res.period, "limit": limit})
    if not counted:
        raise Refused(AppError("limit_exceeded", f"strategy '{res.counter_name}': limit of "
                                                 f"{res.limit.count} per {res.limit.period} reached"))
    res.current_count, res.current_total_count = counted[0]
    cost = res.cost
    if cost is not None and cost.per_request > 0:
        taken = db.rows(TAKE, {**who, "asset": cost.asset, "amount": cost.per_request, "ts": ts})
        if not taken:
            if not db.rows(BALANCE, {**who, "asset": cost.asset}):
                raise Refused(AppError("internal_error", "balance missing"))  # erased meanwhile
            raise Refused(AppError("insufficient_asset",
                                   f"asset '{cost.asset}': balance is below the cost of {cost.per_request}"))
        res.balances[cost.asset] = taken[0][0]
        db.rows(LEDGER, _ledger(who, cost.asset, -cost.per_request, taken[0][0], "reserve", ts, res.request_id))
    if other_assets:
        for name, qty, last in db.rows(BALANCES, who):
            res.balances[name] = qty
            res.recovered[name] = last


def release_script(db, who: dict, res: Reservation, ts: int) -> None:
    """Give back a reservation inside a caller's transaction (e.g. with an async job's final
    status change, so the two commit together). Callers guard against running it twice;
    the refund's ledger row carries the key ``refund:<request_id>``, so a release replayed
    by the writer after a database outage can tell it already happened."""
    db.rows(UNCOUNT, {**who, "strategy": res.counter_name, "period": res.period})
    cost = res.cost
    if cost is not None and cost.per_request > 0:
        added = db.rows(ADD, {**who, "asset": cost.asset, "amount": cost.per_request, "ts": ts})
        if added:
            res.balances[cost.asset] = added[0][0]
            db.rows(LEDGER, _ledger(who, cost.asset, cost.per_request, added[0][0], "refund", ts, res.request_id,
                                    _refund_key(res.request_id)))


def _refund_key(request_id: str) -> str:
    return f"refund:{request_id}"


REFUNDED = """
SELECT 1 FROM asset_ledger
WHERE app_id = :app AND user_id = :user AND asset = :asset AND idempotency_key = :key"""


def queued_release_script(db, rows: list[dict[str, Any]]) -> None:
    """The writer's handler for releases that could not run during a database outage.
    A release whose refund is already in the ledger is skipped (no double refund); a
    reservation without a cost only gives back its limit slot."""
    for row in rows:
        who = {"app": row["app"], "user": row["user"]}
        cost = CostCfg(asset=row["asset"], per_request=row["amount"]) if row["asset"] else None
        if cost and db.rows(REFUNDED, {**who, "asset": cost.asset, "key": _refund_key(row["request_id"])}):
            continue
        res = Reservation(row["app"], row["user"], row["strategy"], row["period"], row["request_id"], cost, None)
        release_script(db, who, res, row["ts"])


def register_writer_kinds(writer) -> None:
    writer.register("release", queued_release_script)


def _grant_script(db, who: dict, asset: str, quantity: int, key: str, ts: int) -> bool:
    added = db.rows(ADD, {**who, "asset": asset, "amount": quantity, "ts": ts})
    if not db.rows(LEDGER_ONCE, _ledger(who, asset, quantity, added[0][0], "grant", ts, None, key)):
        raise Refused(AppError("invalid_parameter", "duplicate"))  # roll the addition back
    return True


ADJUST_LEDGER = """
INSERT INTO asset_ledger (app_id, user_id, asset, delta, balance_after, reason, request_id,
                          idempotency_key, created_ms, note)
VALUES (:app, :user, :asset, :delta, :balance, 'adjust', NULL, :key, :ts, :note)
ON CONFLICT (app_id, user_id, asset, idempotency_key) DO NOTHING
RETURNING id"""


def _adjust_script(db, who: dict, asset: str, delta: int, note: str, key: str, ts: int) -> int:
    amount = {**who, "asset": asset, "amount": abs(delta), "ts": ts}
    changed = db.rows(ADD if delta >= 0 else TAKE, amount)
    if not changed:
        raise Refused(AppError("insufficient_asset", f"delta: the balance is below {abs(delta)}"))
    if not db.rows(ADJUST_LEDGER, {**who, "asset": asset, "delta": delta, "balance": changed[0][0],
                                   "key": key, "ts": ts, "note": note}):
        raise Refused(AppError("invalid_parameter", "duplicate"))  # roll the change back
    return changed[0][0]


# --- the async API


async def ensure_assets(services: Services, app_id: str, user_id: str, policies, ts: int) -> None:
    """Prepare the balances this process has not prepared for the current recovery
    boundary; marked only after the commit, so a rollback leaves nothing stale."""
    prepared = _prepared(services)
    todo = [p for p in policies if not prepared.is_ready((app_id, user_id, p.name), _boundary(p, ts) or 0)]
    if not todo:
        return
    await run_script(services.engine, _prepare_script, {"app": app_id, "user": user_id}, todo, ts)
    for policy in todo:
        prepared.mark((app_id, user_id, policy.name), _boundary(policy, ts) or 0)


async def reserve(services: Services, caller: Caller, counter_name: str, cost: CostCfg | None,
                  limit: LimitCfg | None, request_id: str) -> Reservation:
    """Take one slot of the limit period and the call's cost, atomically, or raise
    ``limit_exceeded`` / ``insufficient_asset`` having changed nothing."""
    ts = now_ms()
    app = caller.app
    who = {"app": app.id, "user": caller.user_id}
    res = Reservation(app.id, caller.user_id, counter_name, period_key(limit.period if limit else "day", ts),
                      request_id, cost, limit)
    await ensure_assets(services, app.id, caller.user_id, app.assets.values(), ts)
    for policy in app.assets.values():  # prepared for this boundary: last recovery is known
        res.recovered[policy.name] = _boundary(policy, ts)
    charged = {cost.asset} if cost is not None and cost.per_request > 0 else set()
    try:
        await run_script(services.engine, _reserve_script, who, res, bool(set(app.assets) - charged), ts)
    except Refused as exc:
        if exc.error.error_type == "internal_error":  # balances erased behind this process's back
            _prepared(services).forget(app.id, caller.user_id)
            return await reserve(services, caller, counter_name, cost, limit, request_id)
        raise exc.error from None
    return res


async def release(services: Services, res: Reservation) -> None:
    """Give back what ``reserve`` took (the call failed). Runs at most once. During a
    database outage the release is queued through the writer and applied once the
    database is back."""
    if res.released:
        return
    res.released = True
    ts = now_ms()
    try:
        await run_script(services.engine, release_script, {"app": res.app_id, "user": res.user_id}, res, ts)
    except Exception as exc:
        if not is_outage(exc):
            raise
        cost = res.cost if res.cost is not None and res.cost.per_request > 0 else None
        await services.writer.put("release", {
            "app": res.app_id, "user": res.user_id, "strategy": res.counter_name, "period": res.period,
            "request_id": res.request_id, "asset": cost.asset if cost else "",
            "amount": cost.per_request if cost else 0, "ts": ts})
        return
    res.current_count -= 1
    res.current_total_count -= 1


async def grant(services: Services, caller: Caller, asset: str, quantity: int, idempotency_key: str) -> bool:
    """Add purchased credits once per idempotency key; False when the key was already used."""
    ts = now_ms()
    await ensure_assets(services, caller.app.id, caller.user_id, [caller.app.assets[asset]], ts)
    try:
        return await run_script(services.engine, _grant_script, {"app": caller.app.id, "user": caller.user_id},
                                asset, quantity, idempotency_key, ts)
    except Refused:
        return False


async def adjust(services: Services, app_id: str, user_id: str, policy: AssetCfg, delta: int, note: str,
                 idempotency_key: str) -> tuple[bool, int]:
    """An operator's grant (delta > 0) or deduction (delta < 0) with a reason, once per
    idempotency key; never below zero. Returns (applied, balance)."""
    ts = now_ms()
    who = {"app": app_id, "user": user_id}
    await ensure_assets(services, app_id, user_id, [policy], ts)
    try:
        return True, await run_script(services.engine, _adjust_script, who, policy.name, delta, note,
                                      idempotency_key, ts)
    except Refused as exc:
        if exc.error.error_type != "invalid_parameter":
            raise exc.error from None
    rows = await run_script(services.engine, lambda db: db.rows(BALANCE, {**who, "asset": policy.name}))
    return False, rows[0][0]


async def read_assets(services: Services, caller: Caller) -> tuple[dict, dict]:
    await ensure_assets(services, caller.app.id, caller.user_id, caller.app.assets.values(), now_ms())
    rows = await run_script(services.engine, lambda db: db.rows(BALANCES, {"app": caller.app.id,
                                                                           "user": caller.user_id}))
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


def _iso_seconds(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
