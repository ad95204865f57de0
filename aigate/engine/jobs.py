"""Async jobs (SPEC §5.5): strategies served by ``http_job`` platforms (video and the like).

The ``ai_requests`` row *is* the job. Its ``job`` JSON holds everything any instance
needs to continue it (platform, upstream job id, deadline, the reserved cost, attempts),
so a job outlives the instance that accepted it.

Life of a job::

    POST       insert `pending`, or `queueing` when the platform's max_concurrency jobs
               are already `processing`; the cost (flat) or hold (usage-based) is
               reserved; the local poller is woken
    poller     claims the due row (a lease: claimed_by + claim_until_ms), then
      pending | queueing   takes a platform slot (-> processing) and submits upstream,
                           or waits in `queueing` while the platform is full
      processing           polls upstream every poll_interval_s
    end        succeeded (custom_response extracted; a hold settled from the final
               result's usage) | failed (cost refunded, hold released), then one usage
               log row

Claiming: on PostgreSQL ``UPDATE .. WHERE request_id IN (SELECT .. FOR UPDATE SKIP
LOCKED)``; on SQLite a conditional ``UPDATE`` per row. Every later write is fenced by
``claimed_by = <this poller>``, and settling is a conditional transition out of an
active status, committed in one transaction with the refund of a failed job or the
settlement of a usage-based one: a job whose lease passed to another instance (this one
stalled or died) is settled and refunded exactly once, and a client that sees `failed`
sees its credits back. A crash leaves its leases to expire; a graceful stop hands them
back at once. Slots are counted under a per-platform advisory lock (PostgreSQL) or the
single SQLite writer, so max_concurrency holds across instances.

Usage-based costs (SPEC §12): the hold is taken at the POST (the cost's ``hold``), and its
lease (``aigate.engine.hold_leases``) passes to the job with the insert: every claim
renews it for a claim's lease plus the longest wait between two claims plus
``credits.hold_lease_s``. It lapses only when no instance claimed the job for that long
(every instance stopped); the sweep then releases it, and the job's settlement, finding
its hold gone, charges nothing (``metadata.credits.expired``). On success the actual
charge comes from what the final poll response reports (``usage`` option of
``providers.http_job``) priced like any call: ``per_1k_*_tokens`` on its tokens,
``per_used_amount`` on its ``used_amount`` (the model's price of that usage).

Platform ``options`` read here (beside the submit/poll description of
``providers.http_job``): ``poll_interval_s`` (default 2), ``deadline_s`` (600, counted
from the POST; the job fails and is refunded when it passes), ``lease_s`` (60: how long
a claim lasts; one upstream request must finish well within it), ``max_concurrency``.

Known limits: a job whose upstream submit succeeded but whose instance died before
saving the upstream id is submitted again by the next instance; upstream jobs are not
cancelled when the deadline passes (generic job APIs have no common cancel call).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import zlib
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.clock import now_ms
from aigate.config.schema import CostCfg, StrategyCfg
from aigate.engine import metering, observe, webhooks
from aigate.engine.ai_requests import ACTIVE, custom_response, record_json
from aigate.engine.calls import CreditMeter
from aigate.engine.records import CallRecord, ai_request_row, usage_log_row
from aigate.engine.routing import Attempt, Trace
from aigate.engine.upstream_errors import to_app_error
from aigate.providers import http_job
from aigate.providers.base import Platform, UpstreamError, UpstreamTimeout, Usage
from aigate.providers.registry import JOB_TYPES
from aigate.services import Services
from aigate.store import tables as t
from aigate.store.script import run_background, run_script

log = logging.getLogger("aigate.jobs")

T = t.ai_requests
C = T.c

DEFAULT_POLL_INTERVAL_S = 2.0
DEFAULT_DEADLINE_S = 600.0
DEFAULT_LEASE_S = 60.0
MAX_SUBMITS = 3  # upstream submit attempts (across the strategy's job platforms)
SUBMIT_BACKOFF_MS = 200
MAX_POLL_BACKOFF_S = 30.0
BATCH = 32  # rows claimed per tick
MAX_INFLIGHT = 128  # jobs one instance works on at once
IDLE_WAIT_S = 1.0  # longest sleep: jobs another instance accepted are seen within it
MIN_WAIT_S = 0.01
STOP_GRACE_S = 5.0


# --- options


def _seconds(platform: Platform, name: str, default: float) -> float:
    value = platform.options.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def poll_interval_ms(platform: Platform) -> int:
    return int(_seconds(platform, "poll_interval_s", DEFAULT_POLL_INTERVAL_S) * 1000)


def step_timeout_s(platform: Platform) -> float:
    """One upstream request must end before the lease does, or another instance may
    take the job while this one still works on it."""
    return _seconds(platform, "lease_s", DEFAULT_LEASE_S) * 0.75


def lease_ms(services: Services) -> int:
    """The longest lease any job platform asks for (one value per claim statement)."""
    leases = [
        _seconds(p, "lease_s", DEFAULT_LEASE_S) for p in services.snapshot.platforms.values() if p.type in JOB_TYPES
    ]
    return int(max(leases, default=DEFAULT_LEASE_S) * 1000)


def hold_lease_ms(services: Services) -> int:
    """How long a job's credit hold lasts past a claim: the claim's lease, the longest wait
    between two claims, and the hold lease of any call."""
    waits = [
        _seconds(p, "poll_interval_s", DEFAULT_POLL_INTERVAL_S)
        for p in services.snapshot.platforms.values()
        if p.type in JOB_TYPES
    ]
    longest_wait = max([*waits, MAX_POLL_BACKOFF_S, IDLE_WAIT_S])
    return lease_ms(services) + int(longest_wait * 1000) + metering.lease_ms(services)


async def _renew_holds(conn: AsyncConnection, request_ids: list[str], until: int) -> None:
    holds = t.asset_holds.c
    await conn.execute(update(t.asset_holds).where(holds.request_id.in_(request_ids)).values(lease_until_ms=until))


# --- accepting a job


async def _platform_full(conn: AsyncConnection, platform: Platform) -> bool:
    limit = platform.options.get("max_concurrency")
    if not limit:
        return False
    busy = (
        await conn.execute(
            select(func.count())
            .select_from(T)
            .where(C.status == "processing", C.job["platform"].as_string() == platform.id)
        )
    ).scalar_one()
    return busy >= limit


async def enqueue(
    services: Services,
    record: CallRecord,
    strategy: StrategyCfg,
    cands: list[tuple[Platform, str]],
    body: dict[str, Any],
    reservation: metering.Reservation,
) -> dict[str, Any]:
    """Insert the job's record (directly: any instance may pick it up at once) and wake
    the local poller. Returns the record, `pending` or `queueing`."""
    platform, model = cands[0]
    record.model = model
    now = now_ms()
    res = reservation
    job = {
        "platform": platform.id,
        "model": model,
        "candidates": [[p.id, m] for p, m in cands],
        "body": body,
        "upstream_id": None,
        "deadline_ms": now + int(_seconds(platform, "deadline_s", DEFAULT_DEADLINE_S) * 1000),
        "reservation": {
            "counter": res.counter_name,
            "period": res.period,
            "cost": res.cost.model_dump(mode="json") if res.cost else None,
            "hold": res.hold,
            "precision": res.precision,
        },
        "custom_response": dict(strategy.custom_response),
        "attempts": [],
        "polls": 0,
        "poll_errors": 0,
        "ttfb_ms": 0,
        "endpoint": record.endpoint,
        "ip": record.ip,
        "request_body": record.request_body.decode() if isinstance(record.request_body, bytes) else record.request_body,
    }
    row = ai_request_row(services, record)
    row.update(platform=platform.type, job=job, next_poll_ms=now, created_ms=record.started_ms, updated_ms=now)
    # a failure here is the caller's to release (aigate.engine.calls)
    async with services.engine.begin() as conn:
        row["status"] = "queueing" if await _platform_full(conn, platform) else "pending"
        await conn.execute(insert(T).values(**row))
        if res.holds:  # the hold's lease now follows the job's claims
            await _renew_holds(conn, [res.request_id], now + hold_lease_ms(services))
    if res.holds:
        metering.open_holds(services).pop(res.request_id, None)
    await services.writer.put(
        "user", {"app_id": record.app_id, "user_id": record.user_id, "created_ms": record.started_ms}
    )
    kick(services)
    return record_json(row)


def kick(services: Services) -> None:
    poller = services.job_poller
    if poller is not None:
        poller.wake.set()


# --- claiming


def _claimable(now: int):
    free = or_(C.claim_until_ms.is_(None), C.claim_until_ms < now)
    return and_(C.status.in_(ACTIVE), C.next_poll_ms <= now, free)


async def claim(services: Services, claimer: str, limit: int) -> list[dict[str, Any]]:
    """Take a lease on up to ``limit`` due jobs no live lease covers."""
    now = now_ms()
    until = now + lease_ms(services)
    lease = {"claimed_by": claimer, "claim_until_ms": until}
    due = select(C.request_id).where(_claimable(now)).order_by(C.next_poll_ms).limit(limit)
    async with services.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            picked = due.with_for_update(skip_locked=True).scalar_subquery()
            rows = (await conn.execute(update(T).where(C.request_id.in_(picked)).values(**lease).returning(*T.c))).all()
        else:
            rows = []
            for (request_id,) in (await conn.execute(due)).all():
                row = (
                    await conn.execute(
                        update(T).where(C.request_id == request_id, _claimable(now)).values(**lease).returning(*T.c)
                    )
                ).first()
                if row is not None:
                    rows.append(row)
        holding = [str(r.request_id) for r in rows if ((r.job or {}).get("reservation") or {}).get("hold")]
        if holding:  # a claimed job's hold is alive as long as the job is
            await _renew_holds(conn, holding, now + hold_lease_ms(services))
    return [dict(r._mapping) for r in rows]


NEXT_DUE_SQL = f"""
SELECT min(CASE WHEN claim_until_ms > next_poll_ms THEN claim_until_ms ELSE next_poll_ms END)
FROM ai_requests WHERE status IN ({", ".join(f"'{s}'" for s in ACTIVE)})"""


def _next_due_script(db) -> int | None:
    return db.rows(NEXT_DUE_SQL)[0][0]


async def _next_due_ms(services: Services) -> int | None:
    """When the earliest active job is due (or its lease ends, if later): no job is
    claimable before then. One hop of the store's lane, as the poller asks every second
    on every instance, idle or not."""
    return await run_background(services.engine, _next_due_script)


# --- writing a claimed job


async def _save(conn: AsyncConnection, claimer: str, request_id: int, *, release: bool, **values: Any) -> bool:
    """Write a claimed job; False when the lease is no longer ours (nothing written)."""
    values["updated_ms"] = now_ms()
    if release:
        values.update(claimed_by=None, claim_until_ms=None)
    result = await conn.execute(
        update(T).where(C.request_id == request_id, C.claimed_by == claimer, C.status.in_(ACTIVE)).values(**values)
    )
    return result.rowcount == 1


async def _save_now(services: Services, claimer: str, request_id: int, **values: Any) -> bool:
    async with services.engine.begin() as conn:
        return await _save(conn, claimer, request_id, release=True, **values)


def _reservation(row: dict[str, Any], job: dict[str, Any]) -> metering.Reservation:
    r = job["reservation"]
    return metering.Reservation(
        app_id=row["app_id"],
        user_id=row["user_id"],
        counter_name=r["counter"],
        period=r["period"],
        request_id=str(row["request_id"]),
        cost=CostCfg(**r["cost"]) if r.get("cost") else None,
        limit=None,
        hold=r.get("hold") or 0,
        precision=r.get("precision") or 0,
    )


def _call_record(
    services: Services,
    row: dict[str, Any],
    job: dict[str, Any],
    *,
    code: int,
    error: str,
    usage: Usage,
    response: bytes | str,
) -> CallRecord:
    platforms = services.snapshot.platforms
    rec = CallRecord(
        request_id=row["request_id"],
        log_request_id=row["platform_id"],
        app_id=row["app_id"],
        user_id=row["user_id"],
        module=row["module"],
        strategy=row["strategy"],
        endpoint=job.get("endpoint", ""),
        started_ms=row["created_ms"],
        from_appserver=row["from_appserver"],
        ip=job.get("ip", ""),
        model=job["model"],
        code=code,
        error=error,
        usage=usage,
        status="succeeded" if code == 200 else "failed",
        request_body=job.get("request_body", ""),
        response_raw=response,
        metadata={"job_id": job.get("upstream_id") or "", "polls": job.get("polls", 0)},
    )
    rec.trace = Trace(
        attempts=[
            Attempt(platforms[a["platform"]], a.get("model", job["model"]), a["started_ms"])
            for a in job.get("attempts", [])
            if a["platform"] in platforms
        ],
        ttfb_ms=job.get("ttfb_ms", 0),
    )
    return rec


# The transition that ends a job: only the lease holder, only out of an active status.
SETTLE = (
    "UPDATE ai_requests SET status = :status, error = :error, response = :response, "
    "custom_response = :custom, job = :job, next_poll_ms = NULL, claimed_by = NULL, "
    "claim_until_ms = NULL, updated_ms = :ts "
    "WHERE request_id = :id AND claimed_by = :me AND status IN ('pending', 'queueing', 'processing') "
    "RETURNING request_id"
)


CREDITS = "UPDATE ai_requests SET credits = :credits WHERE request_id = :id"


def _settle_script(
    db, values: dict[str, Any], meter: CreditMeter, charge: int, deliveries: list[dict[str, Any]]
) -> bool | None:
    """One transaction: the refund of a failed job (or the settlement of a served job's
    hold) and its webhooks commit with its transition or not at all. None when the job
    was not ours to end; else whether the hold was still there to settle."""
    if not db.rows(SETTLE, values):
        return None  # settled already, or the lease passed to another instance
    res = meter.reservation
    who = {"app": res.app_id, "user": res.user_id}
    won = True
    if values["status"] == "failed":  # metering's own statements, run in this transaction
        metering.release_script(db, who, res, values["ts"])
        charge = 0
    elif res.holds:
        won = metering.settle_script(db, who, res, charge, values["ts"])
    credits = meter.summary(charge, won)
    if credits is not None:
        db.rows(CREDITS, {"credits": orjson.dumps(credits).decode(), "id": values["id"]})
    webhooks.insert_script(db, deliveries)
    return won


async def settle(
    services: Services,
    claimer: str,
    row: dict[str, Any],
    job: dict[str, Any],
    *,
    status: str,
    code: int = 200,
    error: str = "",
    response: bytes | str | None = None,
    custom: Any = None,
    usage: Usage | None = None,
) -> bool:
    """End the job exactly once (refunding a failure, settling a served job's hold), then log it."""
    if response is None:
        response = row.get("response") or ""
    values = {
        "status": status,
        "error": error,
        "response": response.decode("utf-8", "replace") if isinstance(response, bytes) else response,
        "custom": None if custom is None else orjson.dumps(custom).decode(),
        "job": orjson.dumps(job).decode(),
        "ts": now_ms(),
        "id": row["request_id"],
        "me": claimer,
    }
    rec = _call_record(services, row, job, code=code, error=error, usage=usage or Usage(), response=response)
    meter = CreditMeter(services, _reservation(row, job))
    served = status == "succeeded"
    charge = meter.charge(rec) if served and meter.reservation.holds else meter.reservation.flat
    deliveries = webhooks.rows_for(services.snapshot, row["app_id"], *webhooks.ai_request_event(row, status, error))
    won = await run_script(services.engine, _settle_script, values, meter, charge, deliveries)
    if won is None:
        return False
    webhooks.kick(services)
    if served:
        await meter.settled(rec, charge, won)
    else:
        meter.released(rec)
    await services.writer.put("usage_log", usage_log_row(services, rec))
    observe.call_ended(services, rec)
    return True


# --- one step of a claimed job


async def _upstream(platform: Platform, call):
    """An upstream request bounded by the lease."""
    try:
        async with asyncio.timeout(step_timeout_s(platform)):
            return await call
    except TimeoutError:
        raise UpstreamTimeout(f"upstream {platform.id} did not answer within the job lease") from None


async def _start(
    services: Services, claimer: str, row: dict[str, Any], job: dict[str, Any], platform: Platform
) -> None:
    """Take a platform slot and submit upstream (or wait in `queueing`)."""
    request_id = row["request_id"]
    interval = poll_interval_ms(platform)
    if row["status"] != "processing":  # a `processing` job without upstream id already holds its slot
        async with services.engine.begin() as conn:
            if platform.options.get("max_concurrency") and conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": zlib.crc32(f"aigate-job:{platform.id}".encode())},
                )
            if await _platform_full(conn, platform):
                await _save(
                    conn, claimer, request_id, release=True, status="queueing", next_poll_ms=now_ms() + interval
                )
                return
            if not await _save(conn, claimer, request_id, release=False, status="processing"):
                return
    attempt = {"platform": platform.id, "model": job["model"], "started_ms": now_ms(), "by": claimer}
    job["attempts"] = [*job.get("attempts", []), attempt]
    body = {**job["body"], "model": platform.upstream_model(job["model"])}
    started = time.perf_counter()
    try:
        upstream_id, res = await _upstream(platform, http_job.submit(services.http, platform, body))
    except UpstreamError as exc:
        attempt["error"] = exc.message
        if exc.retryable and len(job["attempts"]) < MAX_SUBMITS:
            # try again (on the next job platform, if the strategy has several), slot freed
            job["platform"], job["model"] = job["candidates"][len(job["attempts"]) % len(job["candidates"])]
            await _save_now(
                services,
                claimer,
                request_id,
                status="pending",
                job=job,
                next_poll_ms=now_ms() + SUBMIT_BACKOFF_MS * len(job["attempts"]),
            )
            return
        err = to_app_error(exc)
        await settle(
            services, claimer, row, job, status="failed", code=err.status, error=err.message, response=exc.body
        )
        return
    job["upstream_id"] = upstream_id
    job["ttfb_ms"] = int((time.perf_counter() - started) * 1000)
    await _save_now(
        services,
        claimer,
        request_id,
        job=job,
        response=res.raw.decode("utf-8", "replace"),
        next_poll_ms=now_ms() + interval,
    )


async def _poll(services: Services, claimer: str, row: dict[str, Any], job: dict[str, Any], platform: Platform) -> None:
    request_id = row["request_id"]
    interval = poll_interval_ms(platform)
    try:
        status, error, res = await _upstream(platform, http_job.poll(services.http, platform, job["upstream_id"]))
    except UpstreamError as exc:
        if exc.retryable:  # the job itself may be fine: back off and ask again
            job["poll_errors"] = job.get("poll_errors", 0) + 1
            wait = min(interval * 2 ** job["poll_errors"], int(MAX_POLL_BACKOFF_S * 1000))
            await _save_now(services, claimer, request_id, job=job, next_poll_ms=now_ms() + wait)
            return
        err = to_app_error(exc)
        await settle(
            services, claimer, row, job, status="failed", code=err.status, error=err.message, response=exc.body
        )
        return
    job["polls"] = job.get("polls", 0) + 1
    job["poll_errors"] = 0
    if status == "succeeded":
        data = res.data
        await settle(
            services,
            claimer,
            row,
            job,
            status="succeeded",
            response=res.raw,
            custom=custom_response(job.get("custom_response") or {}, data),
            usage=http_job.usage(platform, data),
        )
    elif status == "failed":
        await settle(
            services,
            claimer,
            row,
            job,
            status="failed",
            code=502,
            error=error or "the upstream job failed",
            response=res.raw,
        )
    else:
        await _save_now(
            services,
            claimer,
            request_id,
            job=job,
            response=res.raw.decode("utf-8", "replace"),
            next_poll_ms=now_ms() + interval,
        )


async def advance(services: Services, claimer: str, row: dict[str, Any]) -> None:
    """Move one claimed job one step forward, and hand its lease back."""
    job = dict(row["job"] or {})
    platform = services.snapshot.platforms.get(job.get("platform", ""))
    if now_ms() >= job["deadline_ms"]:
        seconds = (job["deadline_ms"] - row["created_ms"]) / 1000
        await settle(
            services,
            claimer,
            row,
            job,
            status="failed",
            code=504,
            error=f"deadline exceeded: the job did not finish within {seconds:g} s",
        )
    elif platform is None or platform.type not in JOB_TYPES or (row["status"] != "processing" and not platform.enabled):
        await settle(
            services,
            claimer,
            row,
            job,
            status="failed",
            code=400,
            error=f"platform '{job.get('platform')}' is no longer available",
        )
    elif row["status"] == "processing" and job.get("upstream_id"):
        await _poll(services, claimer, row, job, platform)
    else:
        await _start(services, claimer, row, job, platform)


# --- the poller (one per instance)


class Poller:
    def __init__(self, services: Services) -> None:
        self.services = services
        # unique per poller: several instances may share a host name and a process
        self.claimer = f"{services.instance[:48]}:{secrets.token_hex(6)}"
        self.wake = asyncio.Event()
        self.inflight: set[asyncio.Task] = set()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="job-poller")

    async def stop(self, release_leases: bool = True) -> None:
        """Graceful: let running steps finish (bounded), then hand back any lease.
        ``release_leases=False`` stops at once and keeps the leases, as a crash would."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if release_leases and self.inflight:
            await asyncio.wait(list(self.inflight), timeout=STOP_GRACE_S)
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        if release_leases:
            try:
                async with self.services.engine.begin() as conn:
                    await conn.execute(
                        update(T).where(C.claimed_by == self.claimer).values(claimed_by=None, claim_until_ms=None)
                    )
            except Exception:  # the leases then simply expire
                log.warning("could not hand back job leases", exc_info=True)

    async def _run(self) -> None:
        while True:
            self.wake.clear()  # a kick that arrives during the tick is not lost
            wait = IDLE_WAIT_S
            try:
                room = MAX_INFLIGHT - len(self.inflight)
                if room > 0:
                    due = await _next_due_ms(self.services)
                    if due is not None and due <= now_ms():  # nothing is claimable before then
                        for row in await claim(self.services, self.claimer, min(room, BATCH)):
                            self._spawn(row)
                        due = await _next_due_ms(self.services)
                    if due is not None:
                        wait = min(max((due - now_ms()) / 1000, MIN_WAIT_S), IDLE_WAIT_S)
            except Exception:  # a database blip must not kill the poller
                log.warning("job poller tick failed", exc_info=True)
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except TimeoutError:
                pass

    def _spawn(self, row: dict[str, Any]) -> None:
        task = asyncio.create_task(self._step(row), name=f"job-{row['request_id']}")
        self.inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self.wake.set()  # its next poll time may be the earliest now

    async def _step(self, row: dict[str, Any]) -> None:
        try:
            await advance(self.services, self.claimer, row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: step failed; retrying later", row["request_id"])
            try:  # back off instead of retrying in a tight loop; the deadline still ends it
                await _save_now(
                    self.services, self.claimer, row["request_id"], next_poll_ms=now_ms() + int(IDLE_WAIT_S * 1000)
                )
            except Exception:  # the lease then expires on its own
                log.warning("job %s: could not back off", row["request_id"], exc_info=True)


async def start(services: Services) -> None:
    """Background starter (``aigate.engine.background.STARTERS``)."""
    poller = Poller(services)
    services.job_poller = poller
    poller.start()
    services.stoppers.append(poller.stop)
