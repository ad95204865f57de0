"""Credits and usage limits: reserve before the upstream call, then refund or settle.

Every change is an atomic conditional statement plus a ledger row in one transaction,
so no interleaving of concurrent requests — on one instance or many sharing a database
— can overspend a balance, exceed a limit or refund twice:

* limit:  one counter row per (app, user, strategy) holding the current period's count and
  the all-time total; ``INSERT .. ON CONFLICT DO UPDATE .. WHERE count < :limit`` starts a
  new period or adds one only while under the limit;
* credit: ``UPDATE user_assets SET quantity_micros = quantity_micros - :amount WHERE ..
  AND quantity_micros >= :amount``.

Quantities are integers of millionths of a credit (``SCALE``), exact on both databases;
an asset's ``precision`` only says how charges are rounded (up) and balances rendered.

Two kinds of cost (SPEC 12):

* flat (``per_request``): the cost is taken at reserve (ledger ``reserve``) and given back
  if the call fails (``refund``). A failed call gives back its slot in the limit period too;
* usage-based (``per_1k_*_tokens``, ``per_used_amount``): a *hold* is taken at reserve
  (ledger ``reserve``) and a row in ``asset_holds`` records it with a lease. Exactly one
  of three things ends a hold, each by deleting that row (``DELETE .. RETURNING``, so only
  one can win): ``settle`` (the actual charge is debited in full and the rest of the hold
  given back, ledger ``settle`` with the charge), ``release`` (the call failed: all of it
  back, ledger ``release``) or the sweep of lapsed leases (``aigate.engine.hold_leases``:
  the instance died mid-call; the hold is released, ledger ``expired``). A call is
  accepted only when the balance covers its hold, so a settlement can take the balance
  below zero by (actual − hold) of that call at most; calls settling at the same time add
  their excesses. A call whose actual charge is within its hold never goes below zero.

The SQL is written once (see ``aigate.store.script``) and each step runs in one round trip.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from functools import lru_cache
from typing import Any

from aigate.auth.caller import Caller
from aigate.clock import now_ms
from aigate.config.schema import AssetCfg, CostCfg, LimitCfg, Price
from aigate.engine.periods import period_key, recovery_boundary
from aigate.engine.pricing import used_amount as price_of
from aigate.errors import AppError
from aigate.providers.base import Usage
from aigate.providers.tokens import count_messages
from aigate.services import Services
from aigate.store.outage import is_outage
from aigate.store.script import run_script

NO_LIMIT = 2**62
SCALE = 1_000_000  # stored quantities are millionths of a credit

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
UPDATE user_assets SET quantity_micros = quantity_micros - :amount, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset AND quantity_micros >= :amount
RETURNING quantity_micros"""

ADD = """
UPDATE user_assets SET quantity_micros = quantity_micros + :amount, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset
RETURNING quantity_micros"""

LEDGER = """
INSERT INTO asset_ledger (app_id, user_id, asset, delta_micros, balance_micros, charge_micros, reason,
                          request_id, idempotency_key, created_ms)
VALUES (:app, :user, :asset, :delta, :balance, :charge, :reason, :request_id, :key, :ts)"""

HOLD = """
INSERT INTO asset_holds (request_id, app_id, user_id, asset, amount_micros, holder, lease_until_ms, created_ms)
VALUES (:request_id, :app, :user, :asset, :amount, :holder, :lease, :ts)"""

# Ending a hold: whoever deletes its row (settlement, release or the sweep) owns the outcome.
CLAIM_HOLD = "DELETE FROM asset_holds WHERE request_id = :request_id RETURNING amount_micros"

# A grant's idempotency key is unique per (app, user, asset): a repeat inserts nothing.
LEDGER_ONCE = (
    LEDGER
    + """
ON CONFLICT (app_id, user_id, asset, idempotency_key) DO NOTHING
RETURNING id"""
)

CREATE = """
INSERT INTO user_assets (app_id, user_id, name, quantity_micros, last_recovery_ms, updated_ms)
VALUES (:app, :user, :asset, :quantity, :boundary, :ts)
ON CONFLICT (app_id, user_id, name) DO NOTHING
RETURNING quantity_micros"""

BALANCE = """
SELECT quantity_micros, last_recovery_ms FROM user_assets
WHERE app_id = :app AND user_id = :user AND name = :asset"""

RECOVER = """
UPDATE user_assets SET quantity_micros = :quantity, last_recovery_ms = :boundary, updated_ms = :ts
WHERE app_id = :app AND user_id = :user AND name = :asset"""

BALANCES = "SELECT name, quantity_micros, last_recovery_ms FROM user_assets WHERE app_id = :app AND user_id = :user"


class Refused(Exception):
    """Raised inside a script to roll it back; carries the App API error."""

    def __init__(self, error: AppError) -> None:
        self.error = error


# --- quantities: exact millionths in the store, decimals in config, JSON numbers out


def micros(quantity: Decimal | int) -> int:
    """A quantity as stored: exact millionths (the config allows at most 6 decimals)."""
    return int(Decimal(quantity) * SCALE)


def round_up(value: Decimal, precision: int) -> Decimal:
    """A charge rounded up to the asset's ``precision`` decimal places."""
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING)


def render(amount_micros: int, precision: int) -> int | float:
    """A stored quantity as a JSON number with at most ``precision`` decimals (50 stays 50)."""
    whole, rest = divmod(amount_micros, SCALE)
    if not rest:  # the usual case, without Decimal arithmetic
        return whole
    value = (Decimal(amount_micros) / SCALE).quantize(Decimal(1).scaleb(-precision), rounding=ROUND_FLOOR)
    return int(value) if value == value.to_integral_value() else float(value)


def charge_micros(cost: CostCfg, precision: int, usage: Usage, used_amount: Decimal) -> int:
    """What a usage-based call costs: by its tokens, or by its ``used_amount``; rounded up."""
    with localcontext() as ctx:
        ctx.prec = 60
        if cost.per_used_amount is not None:
            raw = used_amount * cost.per_used_amount
        else:
            raw = (
                (cost.per_request or 0)
                + Decimal(usage.input_tokens) * (cost.per_1k_input_tokens or 0) / 1000
                + Decimal(usage.output_tokens) * (cost.per_1k_output_tokens or 0) / 1000
            )
        return micros(round_up(raw, precision))


def hold_micros(cost: CostCfg, precision: int, *, prompt_tokens: int, max_tokens: int | None, price: Price) -> int:
    """The hold a usage-based call reserves: the cost's ``hold``, or what the call would cost
    if it used all of ``max_tokens`` after a prompt of ``prompt_tokens``."""
    if cost.hold is not None:
        return micros(round_up(cost.hold, precision))
    if max_tokens is None:
        raise AppError("config_invalid", "cost: a usage-based cost needs a hold or the call's max_tokens")
    usage = Usage(input_tokens=prompt_tokens, output_tokens=max_tokens)
    return charge_micros(cost, precision, usage, price_of(usage, price))


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


def open_holds(services: Services) -> dict[str, Reservation]:
    """This process's holds whose calls are still running: their leases get renewed."""
    if services.open_holds is None:
        services.open_holds = {}
    return services.open_holds


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
    balances: dict[str, int] = field(default_factory=dict)  # millionths
    recovered: dict[str, int | None] = field(default_factory=dict)
    released: bool = False
    hold: int = 0  # usage-based: the hold reserved, in millionths
    precision: int = 0  # the charged asset's decimal places
    charge: int | None = None  # usage-based: the actual charge once settled, in millionths
    settled: bool = False  # usage-based: settle() ran (whether or not the sweep won first)
    # from ``cost``, worked out once (a call reads them several times)
    holds: bool = field(init=False)  # usage-based: a hold, settled after the call
    flat: int = field(init=False)  # the flat cost taken at reserve, in millionths (0 if usage-based)

    def __post_init__(self) -> None:
        cost = self.cost
        self.holds = cost is not None and cost.usage_based
        self.flat = micros(cost.per_request) if cost is not None and not self.holds and cost.per_request else 0

    @property
    def user_surplus_count(self) -> int:
        if self.limit is None:
            return -1
        return max(self.limit.count - self.current_count, 0)


def _boundary(policy: AssetCfg, ts: int) -> int | None:
    return recovery_boundary(ts, policy.recovery_period) if policy.recoverable else None


def _ledger(
    who: dict,
    asset: str,
    delta: int,
    balance: int,
    reason: str,
    ts: int,
    request_id: str | None = None,
    key: str | None = None,
    charge: int | None = None,
) -> dict[str, Any]:
    return {
        **who,
        "asset": asset,
        "delta": delta,
        "balance": balance,
        "reason": reason,
        "request_id": request_id,
        "key": key,
        "ts": ts,
        "charge": charge,
    }


# --- transaction scripts (synchronous; run by aigate.store.script.run_script)


def _prepare_script(db, who: dict, policies: list[AssetCfg], ts: int) -> None:
    """Create balances on first use and apply due recoveries. Idempotent."""
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""  # SQLite's write lock is held
    for policy in policies:
        boundary = _boundary(policy, ts)
        asset = {**who, "asset": policy.name}
        initial = micros(policy.initial_quantity)
        if db.rows(CREATE, {**asset, "quantity": initial, "boundary": boundary, "ts": ts}):
            db.rows(LEDGER, _ledger(who, policy.name, initial, initial, "initial", ts))
            continue
        if boundary is None:
            continue
        row = db.rows(BALANCE + lock, asset)
        if row and (row[0][1] or 0) < boundary:
            old = row[0][0]
            new = max(old, micros(policy.recovery_quantity))
            db.rows(RECOVER, {**asset, "quantity": new, "boundary": boundary, "ts": ts})
            db.rows(LEDGER, _ledger(who, policy.name, new - old, new, "recovery", ts))


def _reserve_script(
    db, who: dict, res: Reservation, other_assets: bool, holder: str, lease_until: int, ts: int
) -> None:
    limit = res.limit.count if res.limit else NO_LIMIT
    counted = db.rows(COUNT, {**who, "strategy": res.counter_name, "period": res.period, "limit": limit})
    if not counted:
        assert res.limit is not None  # without a limit the count always admits
        raise Refused(
            AppError(
                "limit_exceeded",
                f"strategy '{res.counter_name}': limit of {res.limit.count} per {res.limit.period} reached",
            )
        )
    res.current_count, res.current_total_count = counted[0]
    cost = res.cost
    amount = res.hold if res.holds else res.flat
    if cost is not None and (amount > 0 or res.holds):
        taken = db.rows(TAKE, {**who, "asset": cost.asset, "amount": amount, "ts": ts})
        if not taken:
            if not db.rows(BALANCE, {**who, "asset": cost.asset}):
                raise Refused(AppError("internal_error", "balance missing"))  # erased meanwhile
            what = "hold" if res.holds else "cost"
            raise Refused(
                AppError("insufficient_asset", f"asset '{cost.asset}': balance is below the {what} of {_plain(amount)}")
            )
        res.balances[cost.asset] = taken[0][0]
        db.rows(LEDGER, _ledger(who, cost.asset, -amount, taken[0][0], "reserve", ts, res.request_id))
        if res.holds:
            db.rows(
                HOLD,
                {
                    **who,
                    "asset": cost.asset,
                    "amount": amount,
                    "request_id": res.request_id,
                    "holder": holder,
                    "lease": lease_until,
                    "ts": ts,
                },
            )
    if other_assets:
        for name, qty, last in db.rows(BALANCES, who):
            res.balances[name] = qty
            res.recovered[name] = last


def _plain(amount_micros: int) -> str:
    return format((Decimal(amount_micros) / SCALE).normalize(), "f")


def release_script(db, who: dict, res: Reservation, ts: int) -> None:
    """Give back a reservation inside a caller's transaction (e.g. with an async job's final
    status change, so the two commit together). Callers guard against running it twice;
    a flat refund's ledger row carries the key ``refund:<request_id>``, so a release
    replayed by the writer after a database outage can tell it already happened; a hold
    is given back only by whoever deletes its row (never twice, never after the sweep)."""
    db.rows(UNCOUNT, {**who, "strategy": res.counter_name, "period": res.period})
    cost = res.cost
    if cost is None:
        return
    if res.holds:
        claimed = db.rows(CLAIM_HOLD, {"request_id": res.request_id})
        if not claimed:
            return
        amount, reason = claimed[0][0], "release"
    else:
        amount, reason = res.flat, "refund"
    if amount > 0:
        added = db.rows(ADD, {**who, "asset": cost.asset, "amount": amount, "ts": ts})
        if added:
            res.balances[cost.asset] = added[0][0]
            key = _refund_key(res.request_id) if reason == "refund" else None
            db.rows(LEDGER, _ledger(who, cost.asset, amount, added[0][0], reason, ts, res.request_id, key))


def _refund_key(request_id: str) -> str:
    return f"refund:{request_id}"


REFUNDED = """
SELECT 1 FROM asset_ledger
WHERE app_id = :app AND user_id = :user AND asset = :asset AND idempotency_key = :key"""


def queued_release_script(db, rows: list[dict[str, Any]]) -> None:
    """The writer's handler for releases that could not run during a database outage.
    A flat release whose refund is already in the ledger is skipped (no double refund); a
    hold is given back only if its row is still there; a reservation without a cost only
    gives back its limit slot."""
    for row in rows:
        who = {"app": row["app"], "user": row["user"]}
        cost = None
        if row["asset"]:
            cost = (
                CostCfg(asset=row["asset"], per_1k_input_tokens=Decimal(0))
                if row.get("hold")
                else CostCfg(asset=row["asset"], per_request=Decimal(row["amount"]) / SCALE)
            )
        if (
            cost
            and not cost.usage_based
            and db.rows(REFUNDED, {**who, "asset": cost.asset, "key": _refund_key(row["request_id"])})
        ):
            continue
        res = Reservation(row["app"], row["user"], row["strategy"], row["period"], row["request_id"], cost, None)
        release_script(db, who, res, row["ts"])


def queued_settle_script(db, rows: list[dict[str, Any]]) -> None:
    """The writer's handler for settlements that could not run during a database outage:
    each settles its hold if the hold is still there (not released by the sweep meanwhile)."""
    for row in rows:
        cost = CostCfg(asset=row["asset"], per_1k_input_tokens=Decimal(0))
        res = Reservation(row["app"], row["user"], "", "", row["request_id"], cost, None)
        settle_script(db, {"app": row["app"], "user": row["user"]}, res, row["charge"], row["ts"])


def register_writer_kinds(writer) -> None:
    writer.register("release", queued_release_script)
    writer.register("settle", queued_settle_script)


def settle_script(db, who: dict, res: Reservation, charge: int, ts: int) -> bool:
    """End a hold with the call's actual charge: debited in full, the rest of the hold given
    back, in one ledger row. False (and nothing changed) when the sweep ended it first."""
    claimed = db.rows(CLAIM_HOLD, {"request_id": res.request_id})
    if not claimed:
        return False
    back = claimed[0][0] - charge
    assert res.cost is not None  # only a usage-based reservation holds
    asset = res.cost.asset
    added = db.rows(ADD, {**who, "asset": asset, "amount": back, "ts": ts})
    if added:
        res.balances[asset] = added[0][0]
        db.rows(LEDGER, _ledger(who, asset, back, added[0][0], "settle", ts, res.request_id, charge=charge))
    return True


def _grant_script(db, who: dict, asset: str, amount: int, key: str, ts: int) -> bool:
    added = db.rows(ADD, {**who, "asset": asset, "amount": amount, "ts": ts})
    if not db.rows(LEDGER_ONCE, _ledger(who, asset, amount, added[0][0], "grant", ts, None, key)):
        raise Refused(AppError("invalid_parameter", "duplicate"))  # roll the addition back
    return True


ADJUST_LEDGER = """
INSERT INTO asset_ledger (app_id, user_id, asset, delta_micros, balance_micros, reason, request_id,
                          idempotency_key, created_ms, note)
VALUES (:app, :user, :asset, :delta, :balance, 'adjust', NULL, :key, :ts, :note)
ON CONFLICT (app_id, user_id, asset, idempotency_key) DO NOTHING
RETURNING id"""


def _adjust_script(db, who: dict, asset: str, delta: int, note: str, key: str, ts: int) -> int:
    amount = {**who, "asset": asset, "amount": abs(delta), "ts": ts}
    changed = db.rows(ADD if delta >= 0 else TAKE, amount)
    if not changed:
        raise Refused(AppError("insufficient_asset", f"delta: the balance is below {render(abs(delta), 6)}"))
    if not db.rows(
        ADJUST_LEDGER,
        {**who, "asset": asset, "delta": delta, "balance": changed[0][0], "key": key, "ts": ts, "note": note},
    ):
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


def lease_ms(services: Services) -> int:
    return int(services.config.credits.hold_lease_s * 1000)


async def reserve(
    services: Services,
    caller: Caller,
    counter_name: str,
    cost: CostCfg | None,
    limit: LimitCfg | None,
    request_id: str,
    *,
    hold: int | None = None,
) -> Reservation:
    """Take one slot of the limit period and the call's cost (flat) or hold (usage-based,
    ``hold`` in millionths from ``hold_micros``), atomically, or raise ``limit_exceeded`` /
    ``insufficient_asset`` having changed nothing. A usage-based reservation must end in
    ``settle`` or ``release``; until then this process renews its lease."""
    ts = now_ms()
    app = caller.app
    who = {"app": app.id, "user": caller.user_id}
    res = Reservation(
        app.id, caller.user_id, counter_name, period_key(limit.period if limit else "day", ts), request_id, cost, limit
    )
    if cost is not None and cost.asset in app.assets:
        res.precision = app.assets[cost.asset].precision
    if res.holds:
        if hold is None:  # a caller that cannot settle must not take a hold
            raise AppError("config_invalid", f"'{counter_name}': a usage-based cost is not supported here")
        res.hold = hold
    await ensure_assets(services, app.id, caller.user_id, app.assets.values(), ts)
    for policy in app.assets.values():  # prepared for this boundary: last recovery is known
        res.recovered[policy.name] = _boundary(policy, ts)
    charged = {cost.asset} if cost is not None and (res.flat > 0 or res.holds) else set()
    try:
        await run_script(
            services.engine,
            _reserve_script,
            who,
            res,
            bool(set(app.assets) - charged),
            services.instance,
            ts + lease_ms(services),
            ts,
        )
    except Refused as exc:
        if exc.error.error_type == "internal_error":  # balances erased behind this process's back
            _prepared(services).forget(app.id, caller.user_id)
            return await reserve(services, caller, counter_name, cost, limit, request_id, hold=hold)
        raise exc.error from None
    if res.holds:
        open_holds(services)[request_id] = res
    return res


async def reserve_call(
    services: Services,
    caller: Caller,
    counter_name: str,
    cost: CostCfg | None,
    limit: LimitCfg | None,
    request_id: str,
    *,
    model: str,
    messages: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
) -> Reservation:
    """``reserve`` for a call about to go upstream: a usage-based cost's hold is the cost's
    ``hold``, or what ``messages`` (counted with tiktoken) plus all of ``max_tokens`` would
    cost on ``model``'s price."""
    hold = None
    if cost is not None and cost.usage_based:
        prompt = count_messages(messages or [], model) if cost.hold is None else 0
        policy = caller.app.assets.get(cost.asset)
        hold = hold_micros(
            cost,
            policy.precision if policy else 0,
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            price=services.snapshot.price(model),
        )
    return await reserve(services, caller, counter_name, cost, limit, request_id, hold=hold)


def usage_charge(services: Services, res: Reservation, model: str, usage: Usage) -> int:
    """The actual charge of a usage-based call, in millionths, from what it used."""
    assert res.cost is not None  # usage-based: it has a cost
    return charge_micros(res.cost, res.precision, usage, price_of(usage, services.snapshot.price(model)))


def charge_summary(res: Reservation, charge: int | None) -> dict[str, Any]:
    """What the call cost, for its usage-log row (``metadata.credits``)."""
    out: dict[str, Any] = {"asset": res.cost.asset if res.cost else "", "charge": render(charge or 0, 6)}
    if res.holds:
        out["hold"] = render(res.hold, 6)
    return out


async def settle(services: Services, res: Reservation, charge: int) -> bool:
    """End a usage-based reservation with its actual charge (millionths, from
    ``charge_micros``). Runs at most once; False when the sweep had released the hold."""
    if res.settled or res.released or not res.holds:
        return False
    res.settled = True
    open_holds(services).pop(res.request_id, None)
    res.charge = charge
    ts = now_ms()
    try:
        return await run_script(
            services.engine, settle_script, {"app": res.app_id, "user": res.user_id}, res, charge, ts
        )
    except Exception as exc:
        if not is_outage(exc):
            raise
        # applied by the writer once the database is back (unless the sweep got there first)
        assert res.cost is not None  # only a usage-based reservation holds
        await services.writer.put(
            "settle",
            {
                "app": res.app_id,
                "user": res.user_id,
                "request_id": res.request_id,
                "asset": res.cost.asset,
                "charge": charge,
                "ts": ts,
            },
        )
        return True


async def release(services: Services, res: Reservation) -> None:
    """Give back what ``reserve`` took (the call failed). Runs at most once. During a
    database outage the release is queued through the writer and applied once the
    database is back."""
    if res.released or res.settled:
        return
    res.released = True
    open_holds(services).pop(res.request_id, None)
    ts = now_ms()
    try:
        await run_script(services.engine, release_script, {"app": res.app_id, "user": res.user_id}, res, ts)
    except Exception as exc:
        if not is_outage(exc):
            raise
        charged = res.cost is not None and (res.holds or res.flat > 0)
        await services.writer.put(
            "release",
            {
                "app": res.app_id,
                "user": res.user_id,
                "strategy": res.counter_name,
                "period": res.period,
                "request_id": res.request_id,
                "asset": res.cost.asset if charged and res.cost is not None else "",
                "amount": res.flat if charged else 0,
                "hold": res.holds,
                "ts": ts,
            },
        )
        return
    res.current_count -= 1
    res.current_total_count -= 1


async def grant(services: Services, caller: Caller, asset: str, quantity: Decimal | int, idempotency_key: str) -> bool:
    """Add purchased credits once per idempotency key; False when the key was already used."""
    ts = now_ms()
    await ensure_assets(services, caller.app.id, caller.user_id, [caller.app.assets[asset]], ts)
    try:
        return await run_script(
            services.engine,
            _grant_script,
            {"app": caller.app.id, "user": caller.user_id},
            asset,
            micros(quantity),
            idempotency_key,
            ts,
        )
    except Refused:
        return False


async def adjust(
    services: Services,
    app_id: str,
    user_id: str,
    policy: AssetCfg,
    delta: Decimal | int,
    note: str,
    idempotency_key: str,
) -> tuple[bool, int | float]:
    """An operator's grant (delta > 0) or deduction (delta < 0) of ``delta`` credits with a
    reason, once per idempotency key; never below zero. Returns (applied, balance), the
    balance rendered with the asset's precision."""
    ts = now_ms()
    who = {"app": app_id, "user": user_id}
    await ensure_assets(services, app_id, user_id, [policy], ts)
    try:
        balance = await run_script(
            services.engine, _adjust_script, who, policy.name, micros(delta), note, idempotency_key, ts
        )
        return True, render(balance, policy.precision)
    except Refused as exc:
        if exc.error.error_type != "invalid_parameter":
            raise exc.error from None
    rows = await run_script(services.engine, lambda db: db.rows(BALANCE, {**who, "asset": policy.name}))
    return False, render(rows[0][0], policy.precision)


async def read_assets(services: Services, caller: Caller) -> tuple[dict, dict]:
    """Balances (millionths) and last recovery times of the caller's assets."""
    await ensure_assets(services, caller.app.id, caller.user_id, caller.app.assets.values(), now_ms())
    rows = await run_script(
        services.engine, lambda db: db.rows(BALANCES, {"app": caller.app.id, "user": caller.user_id})
    )
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


@lru_cache(maxsize=1024)  # recovery times fall on period boundaries: few distinct values
def _iso_seconds(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assets_json(caller: Caller, balances: dict[str, int], recovered: dict[str, int | None]) -> list[dict]:
    """The user's assets as seed 002's ``asset`` objects (``balances`` in millionths)."""
    out = []
    for name, policy in caller.app.assets.items():
        out.append(
            {
                "last_recovery_time": _iso_seconds(recovered.get(name)),
                "name": name,
                "quantity": render(balances.get(name, micros(policy.initial_quantity)), policy.precision),
                "recoverable": policy.recoverable,
                "recovery_period": policy.recovery_period,
                "recovery_quantity": render(micros(policy.recovery_quantity), policy.precision),
                "type": policy.type,
                "valid_seconds": policy.valid_seconds,
            }
        )
    return out
