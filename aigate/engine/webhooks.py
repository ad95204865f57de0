"""Webhooks (SPEC §14): events pushed to apps' endpoints, at least once, from a durable queue.

Events: ``ai_request.succeeded`` / ``ai_request.failed`` (async jobs reaching their end),
``asset.low`` (a balance dropping to an asset's ``low_quantity``), ``platform.down`` /
``platform.up`` (sent to every app's endpoints that subscribe). Each event becomes one
*delivery* per subscribed endpoint: a ``webhook_deliveries`` row with its own
``msg_id``, the ``webhook-id`` every retry repeats so receivers can drop duplicates.

Deliveries are signed per Standard Webhooks (the ``standardwebhooks`` library:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``);
the body is ``{"type", "timestamp", "data"}``. Every instance runs a deliverer that
claims due rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional
``UPDATE`` on SQLite), so one instance sends each attempt, and a row whose instance died
is sent by another once its lease ends; rows outlive restarts. A 2xx answer delivers;
anything else (or no answer within ``webhook_delivery.timeout_s``; redirects are not
followed) is retried after ``retry_delays_s`` (Standard Webhooks' schedule: 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 10 h) until ``give_up_after_s`` (24 h) from the first attempt;
then the row is ``failed``, listed in the Admin API and can be re-sent (a new round,
the same ``msg_id``).

Targets: a URL naming a loopback, private, link-local or reserved address is refused
unless the endpoint has ``allow_private: true``: literal addresses when the
configuration is validated, and every address a name resolves to when delivering (the
connection is made to the checked address, so DNS cannot swap it in between).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from sqlalchemy import and_, or_, select, update
from standardwebhooks import Webhook

from aigate import metrics
from aigate.clock import now_ms
from aigate.config.schema import WebhookCfg
from aigate.engine import metering
from aigate.netguard import is_private_url, public_session
from aigate.store import tables as t
from aigate.store.script import run_background, run_script

log = logging.getLogger("aigate.webhooks")

W = t.webhook_deliveries
C = W.c
LEASE_MS = 60_000
BATCH = 32
IDLE_WAIT_S = 1.0
MAX_ERROR_CHARS = 500

INSERT = (
    "INSERT INTO webhook_deliveries (msg_id, app_id, url, event, payload, status, attempts, "
    "next_attempt_ms, last_error, created_ms, round_ms, updated_ms) VALUES (:msg_id, :app_id, :url, "
    ":event, :payload, 'pending', 0, :ts, '', :ts, :ts, :ts)"
)


# --- making deliveries


def payload(event: str, data: dict[str, Any]) -> str:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"type": event, "timestamp": ts, "data": data}).decode()


def rows_for(snapshot: Any, app_id: str, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """One delivery row per enabled endpoint of ``app_id`` that subscribes to ``event``."""
    targets = [w for w in snapshot.webhooks.get(app_id, ()) if w.enabled and event in w.events]
    if not targets:
        return []
    body, ts = payload(event, data), now_ms()
    return [
        dict(msg_id=f"msg_{secrets.token_hex(12)}", app_id=app_id, url=w.url, event=event, payload=body, ts=ts)
        for w in targets
    ]


def insert_script(db, rows: list[dict[str, Any]]) -> None:
    """Queue deliveries inside a caller's transaction script (see ``store.script``)."""
    db.many(INSERT, rows)


def kick(services: Any) -> None:
    deliverer = services.webhook_deliverer
    if deliverer is not None:
        deliverer.wake.set()


async def enqueue(services: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        await run_script(services.engine, insert_script, rows)
        kick(services)


async def emit(services: Any, app_id: str, event: str, data: dict[str, Any]) -> None:
    """Queue ``event`` for the app's endpoints (durable once this returns)."""
    await enqueue(services, rows_for(services.snapshot, app_id, event, data))


async def emit_platform(services: Any, event: str, data: dict[str, Any]) -> None:
    """Platform events go to every app whose endpoints subscribe to them."""
    rows = [r for app_id in services.snapshot.webhooks for r in rows_for(services.snapshot, app_id, event, data)]
    try:
        await enqueue(services, rows)
    except Exception:  # a database outage must not break the call that noticed the platform
        log.warning("could not queue %s webhooks", event, exc_info=True)


def ai_request_event(row: dict[str, Any], status: str, error: str = "") -> tuple[str, dict[str, Any]]:
    """The event of an AI request that reached ``succeeded`` / ``failed``."""
    return f"ai_request.{status}", {
        "request_id": str(row["request_id"]),
        "user_id": row["user_id"],
        "strategy": row["strategy"],
        "module": row["module"],
        "status": status,
        "error": error,
    }


async def balance_changed(services: Any, app_id: str, user_id: str, asset: str, before: int, after: int) -> None:
    """Call after a charge settles (balances in millionths, as stored): ``asset.low`` when
    the balance drops to or below the asset's ``low_quantity`` with this charge (once per
    crossing, not on every call)."""
    app = services.snapshot.apps.get(app_id)
    policy = app.assets.get(asset) if app is not None else None
    low = getattr(policy, "low_quantity", None)
    if policy is None or low is None or not (before > metering.micros(low) >= after):
        return
    await emit(
        services,
        app_id,
        "asset.low",
        {
            "user_id": user_id,
            "asset": asset,
            "quantity": metering.render(after, policy.precision),
            "low_quantity": metering.render(metering.micros(low), policy.precision),
        },
    )


# --- sending


def _sign(secret: str, msg_id: str, body: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def _endpoint(services: Any, row: dict[str, Any]) -> WebhookCfg | None:
    for w in services.snapshot.webhooks.get(row["app_id"], ()):
        if w.url == row["url"]:
            return w
    return None


class Deliverer:
    """Claims due deliveries and sends them (one per instance)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.claimer = f"{services.instance[:40]}:{secrets.token_hex(6)}"
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.inflight: set[asyncio.Task] = set()
        cfg = services.config.webhook_delivery
        self.delays_ms = [int(s * 1000) for s in cfg.retry_delays_s]
        self.give_up_ms = int(cfg.give_up_after_s * 1000)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        self.public = public_session(timeout)
        self.private = aiohttp.ClientSession(timeout=timeout)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.inflight:
            await asyncio.wait(list(self.inflight), timeout=5)
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        try:  # hand back leases at once; a crash leaves them to expire
            async with self.services.engine.begin() as conn:
                await conn.execute(
                    update(W)
                    .where(C.claimed_by == self.claimer, C.status == "pending")
                    .values(claimed_by=None, claim_until_ms=None)
                )
        except Exception:
            log.warning("could not hand back webhook leases", exc_info=True)
        await self.public.close()
        await self.private.close()

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                rows = await claim(self.services, self.claimer, BATCH) if await _any_due(self.services) else []
                for row in rows:
                    task = asyncio.create_task(self._send(row))
                    self.inflight.add(task)
                    task.add_done_callback(self._done)
            except Exception:
                log.warning("webhook tick failed", exc_info=True)
            try:
                await asyncio.wait_for(self.wake.wait(), IDLE_WAIT_S)
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)

    async def _post(self, endpoint: WebhookCfg, row: dict[str, Any]) -> tuple[int | None, str]:
        if not endpoint.enabled:
            return None, "endpoint disabled"
        if not endpoint.allow_private:
            if is_private_url(endpoint.url):
                return None, "refused: loopback or private address (allow_private is false)"
        session = self.private if endpoint.allow_private else self.public
        headers = _sign(endpoint.secret, row["msg_id"], row["payload"])
        try:
            async with session.post(
                endpoint.url, data=row["payload"].encode(), headers=headers, allow_redirects=False
            ) as resp:
                text = (await resp.content.read(MAX_ERROR_CHARS)).decode("utf-8", "replace")
                return resp.status, "" if 200 <= resp.status < 300 else f"HTTP {resp.status}: {text}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]

    async def _send(self, row: dict[str, Any]) -> None:
        endpoint = _endpoint(self.services, row)
        if endpoint is None:
            status, error = None, "the endpoint is no longer configured"
        else:
            status, error = await self._post(endpoint, row)
        now = now_ms()
        attempts = row["attempts"] + 1
        values: dict[str, Any] = dict(
            attempts=attempts,
            last_status=status,
            last_error=error[:MAX_ERROR_CHARS],
            claimed_by=None,
            claim_until_ms=None,
            updated_ms=now,
        )
        if not error:
            values.update(status="delivered", delivered_ms=now, next_attempt_ms=None)
            outcome = "delivered"
        else:
            delay = self.delays_ms[min(attempts - 1, len(self.delays_ms) - 1)]
            if endpoint is None or now + delay > row["round_ms"] + self.give_up_ms:
                values.update(status="failed", next_attempt_ms=None)
                outcome = "failed"
                log.warning("webhook %s to %s failed for good: %s", row["msg_id"], row["url"], error)
            else:
                values.update(next_attempt_ms=now + delay)
                outcome = "retry"
                if delay < IDLE_WAIT_S * 1000:  # due before the next idle tick
                    asyncio.get_running_loop().call_later(delay / 1000 + 0.01, self.wake.set)
        metrics.WEBHOOK_DELIVERIES.labels(row["event"], outcome).inc()
        try:
            async with self.services.engine.begin() as conn:
                await conn.execute(update(W).where(C.id == row["id"], C.claimed_by == self.claimer).values(**values))
        except Exception:  # the lease expires and another attempt is made: at least once
            log.warning("could not record webhook attempt %s", row["msg_id"], exc_info=True)


def _claimable(now: int):
    free = or_(C.claim_until_ms.is_(None), C.claim_until_ms < now)
    return and_(C.status == "pending", C.next_attempt_ms <= now, free)


# ``_claimable``'s condition, in plain SQL
ANY_DUE_SQL = """
SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_ms <= :now
AND (claim_until_ms IS NULL OR claim_until_ms < :now) LIMIT 1"""


def _any_due_script(db, now: int) -> bool:
    return bool(db.rows(ANY_DUE_SQL, {"now": now}))


async def _any_due(services: Any) -> bool:
    """Whether ``claim`` would find a delivery: one hop of the store's lane, as the
    deliverer asks every second on every instance, idle or not."""
    return await run_background(services.engine, _any_due_script, now_ms())


async def claim(services: Any, claimer: str, limit: int) -> list[dict[str, Any]]:
    now = now_ms()
    lease = {"claimed_by": claimer, "claim_until_ms": now + LEASE_MS}
    due = select(C.id).where(_claimable(now)).order_by(C.next_attempt_ms).limit(limit)
    async with services.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            picked = due.with_for_update(skip_locked=True).scalar_subquery()
            rows = (await conn.execute(update(W).where(C.id.in_(picked)).values(**lease).returning(*W.c))).all()
        else:
            rows = []
            for (delivery_id,) in (await conn.execute(due)).all():
                row = (
                    await conn.execute(
                        update(W).where(C.id == delivery_id, _claimable(now)).values(**lease).returning(*W.c)
                    )
                ).first()
                if row is not None:
                    rows.append(row)
    return [dict(r._mapping) for r in rows]


async def resend(services: Any, msg_id: str) -> dict[str, Any] | None:
    """Start a new round for a delivery (same ``msg_id``); None when unknown."""
    now = now_ms()
    async with services.engine.begin() as conn:
        row = (
            await conn.execute(
                update(W)
                .where(C.msg_id == msg_id)
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_ms=now,
                    round_ms=now,
                    claimed_by=None,
                    claim_until_ms=None,
                    updated_ms=now,
                    delivered_ms=None,
                )
                .returning(*W.c)
            )
        ).first()
    kick(services)
    return dict(row._mapping) if row is not None else None


async def start(services: Any) -> None:
    """Background starter."""
    deliverer = Deliverer(services)
    services.webhook_deliverer = deliverer
    deliverer.start()
    services.stoppers.append(deliverer.stop)
