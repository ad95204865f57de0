"""Usage-based costs on async jobs (SPEC §12 on http_job strategies): the hold is taken at
the POST, settled from the usage the job's final result reports, released when the job
fails or runs out of time, swept when its lease lapses, and ended exactly once by
instances racing for the job. Every user's ledger sums to the balance."""

from __future__ import annotations

import asyncio
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import func, select, update

from aigate.clock import now_ms
from aigate.engine import hold_leases, jobs
from aigate.providers import http_job
from aigate.providers.base import Platform
from aigate.simulator.text import count_tokens
from aigate.store import tables as t
from tests.api.test_ai_requests import job_platform
from tests.gateway import base_config, start_gateway
from tests.system.test_jobs import REDIS_URL, log_rows, wait_for

M = 1_000_000
HOLD = 5
IN_PER_1K, OUT_PER_1K = Decimal(1), Decimal(2)  # credits per 1k tokens
PER_USED = Decimal(2)  # credits per unit of used_amount
SECOND_PRICE = Decimal("0.001")  # sim-video-2: used_amount per output unit


def config(db_url: str, sim_url: str, *, redis_url: str = "", worker_id: int | None = None) -> dict:
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    if worker_id is not None:
        doc["server"]["worker_id"] = worker_id
    doc["database"]["pool_size"] = 4  # the PostgreSQL server is shared
    doc["models"] += [
        {"name": "sim-video-1", "price": {"per_request_price": 0.5}},
        {"name": "sim-video-2", "price": {"output_price": str(SECOND_PRICE), "output_price_unit": 1}},
    ]
    # sim-video-2 bills only what the result reports as output (a multiselect `usage`)
    per_unit = {**job_platform(sim_url, "sim-video-2", usage="{output_tokens: usage.output_tokens}")}
    per_unit["models"] = ["sim-video-2"]
    doc["platforms"] += [
        job_platform(sim_url, "sim-video"),
        job_platform(sim_url, "sim-video-short", deadline_s=0.4),
        per_unit,
    ]
    app = doc["apps"][0]
    app["assets"].append({"name": "credit", "initial_quantity": 10, "precision": 2})
    video = {
        "module": "video",
        "request": {"prompt": "{{ .prompt }}"},
        "custom_response": {"video_url": "result.video_url"},
    }
    tokens = {"asset": "credit", "per_1k_input_tokens": str(IN_PER_1K), "per_1k_output_tokens": str(OUT_PER_1K)}
    app["strategies"] += [
        {
            **video,
            "name": "v-tokens",
            "model": "sim-video-1",
            "platforms": ["sim-video"],
            "cost": {**tokens, "hold": HOLD},
        },
        {
            **video,
            "name": "v-short",
            "model": "sim-video-1",
            "platforms": ["sim-video-short"],
            "cost": {**tokens, "hold": HOLD},
        },
        {
            **video,
            "name": "v-amount",
            "model": "sim-video-2",
            "platforms": ["sim-video-2"],
            "cost": {"asset": "credit", "per_used_amount": str(PER_USED), "hold": HOLD},
        },
    ]
    return doc


def up(value: Decimal) -> int:
    """Credits rounded up to the asset's 2 decimals, in millionths."""
    return int(value.quantize(Decimal("0.01"), rounding=ROUND_CEILING) * M)


def token_charge(prompt: str, output_tokens: int) -> int:
    input_tokens = count_tokens(prompt)  # what the simulator reports for the prompt
    return up(input_tokens * IN_PER_1K / 1000 + output_tokens * OUT_PER_1K / 1000)


async def submit(gw, user: str, strategy: str, prompt: str) -> tuple[int, dict]:
    async with gw.session.post(
        f"{gw.url}/bp/server/user/{user}/ai/ai_request",
        json={"strategy": strategy, "parameters": {"prompt": prompt}},
        headers=gw.server_headers(),
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def balance(gw, user: str) -> int:
    async with gw.services.engine.connect() as conn:
        return (
            await conn.execute(
                select(t.user_assets.c.quantity_micros).where(
                    t.user_assets.c.user_id == user, t.user_assets.c.name == "credit"
                )
            )
        ).scalar_one()


async def ledger(gw, user: str) -> list[tuple[str, int, int | None, str | None]]:
    """(reason, delta, charge, request_id) of the user's credit ledger, in order."""
    c = t.asset_ledger.c
    async with gw.services.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(c.reason, c.delta_micros, c.charge_micros, c.request_id)
                .where(c.user_id == user, c.asset == "credit")
                .order_by(c.id)
            )
        ).all()
    return [tuple(r) for r in rows]


async def open_holds(gw) -> list:
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.asset_holds))).all()


async def settled_exactly(gw, user: str) -> list[str]:
    """The ledger sums to the balance; returns the reasons after `initial`."""
    rows = await ledger(gw, user)
    assert sum(delta for _, delta, _, _ in rows) == await balance(gw, user), rows
    return [reason for reason, *_ in rows[1:]]


async def job_credits(gw, request_id: str):
    async with gw.services.engine.connect() as conn:
        return (
            await conn.execute(select(t.ai_requests.c.credits).where(t.ai_requests.c.request_id == int(request_id)))
        ).scalar_one()


def test_the_usage_option_maps_and_rounds_what_a_job_reports():
    p = Platform(
        id="p", number=1, type="http_job", base_url="http://x", options={"usage": "{output_tokens: result.seconds}"}
    )
    assert http_job.usage(p, {"result": {"seconds": 4.2}}).output_tokens == 5  # whole units, rounded up
    assert http_job.usage(p, {"result": {"seconds": "8"}}).output_tokens == 8
    assert http_job.usage(p, {"result": {}}).output_tokens == 0
    plain = Platform(id="q", number=2, type="http_job", base_url="http://x")
    used = http_job.usage(plain, {"usage": {"input_tokens": 7, "output_tokens": 9}})
    assert (used.input_tokens, used.output_tokens) == (7, 9)


async def test_a_job_settles_its_hold_from_the_usage_it_reports(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url))
    try:
        prompt = "a sunrise over the sea"
        status, rec = await submit(gw, "u1", "v-tokens", f"[[sim job_output_tokens=1500]] {prompt}")
        assert status == 200 and rec["status"] == "pending", rec
        assert await balance(gw, "u1") == (10 - HOLD) * M  # the hold is out of the balance meanwhile
        [hold] = await open_holds(gw)
        assert hold.request_id == rec["request_id"] and hold.amount_micros == HOLD * M
        # the job owns the hold's lease now: it outlasts a claim and the wait for the next
        assert hold.lease_until_ms >= now_ms() + jobs.hold_lease_ms(gw.services) - 5_000
        assert rec["request_id"] not in (gw.services.open_holds or {})

        done, _ = await wait_for(gw, "u1", rec["request_id"])
        assert done["status"] == "succeeded", done
        first = token_charge(f" {prompt}", 1500)  # 3.01 credits: below the hold
        assert first == 3_010_000
        assert await balance(gw, "u1") == 10 * M - first
        assert await open_holds(gw) == []
        rows = await ledger(gw, "u1")
        assert rows[1:] == [
            ("reserve", -HOLD * M, None, rec["request_id"]),
            ("settle", HOLD * M - first, first, rec["request_id"]),
        ]
        assert await job_credits(gw, rec["request_id"]) == {"asset": "credit", "charge": 3.01, "hold": 5}
        [log] = await log_rows(gw, done["platform_id"])
        assert (log.input_tokens, log.output_tokens) == (count_tokens(f" {prompt}"), 1500)
        assert log.metadata["credits"] == {"asset": "credit", "charge": 3.01, "hold": 5}

        # a job that used more than its hold is charged in full: below zero by the excess
        status, rec2 = await submit(gw, "u1", "v-tokens", f"[[sim job_output_tokens=4000]] {prompt}")
        assert status == 200
        await wait_for(gw, "u1", rec2["request_id"])
        second = token_charge(f" {prompt}", 4000)  # 8.01 credits
        assert await balance(gw, "u1") == 10 * M - first - second < 0
        status, refused = await submit(gw, "u1", "v-tokens", prompt)
        assert status == 402 and refused["error"]["error_type"] == "insufficient_asset", refused
        assert await settled_exactly(gw, "u1") == ["reserve", "settle", "reserve", "settle"]

        # per_used_amount: credits per unit of the model's price of what the job used
        status, rec3 = await submit(gw, "u2", "v-amount", "[[sim job_output_tokens=1200]] waves")
        done3, _ = await wait_for(gw, "u2", rec3["request_id"])
        assert done3["status"] == "succeeded"
        [log3] = await log_rows(gw, done3["platform_id"])
        assert log3.input_tokens == 0 and log3.output_tokens == 1200  # the option billed output only
        assert Decimal(log3.used_amount) == 1200 * SECOND_PRICE
        assert await balance(gw, "u2") == 10 * M - up(1200 * SECOND_PRICE * PER_USED)  # 2.4 credits
        assert await settled_exactly(gw, "u2") == ["reserve", "settle"]
    finally:
        await gw.close()


async def test_failed_and_overdue_jobs_release_their_holds(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url))
    try:
        _, failing = await submit(gw, "u1", "v-tokens", "[[sim job_fail=true]] a storm")
        _, slow = await submit(gw, "u2", "v-short", "[[sim job_duration_ms=5000]] slow")
        done, _ = await wait_for(gw, "u1", failing["request_id"])
        assert done["status"] == "failed"
        done2, _ = await wait_for(gw, "u2", slow["request_id"])
        assert done2["status"] == "failed" and done2["error"].startswith("deadline exceeded")
        for user, rec in (("u1", failing), ("u2", slow)):
            assert await balance(gw, user) == 10 * M  # a client that sees `failed` sees its credits back
            assert await settled_exactly(gw, user) == ["reserve", "release"]
            assert await job_credits(gw, rec["request_id"]) == {"asset": "credit", "charge": 0, "hold": 5}
        assert await open_holds(gw) == []
    finally:
        await gw.close()


async def test_a_lapsed_job_hold_is_swept_and_the_job_then_charges_nothing(db_url, simulator):
    """Every instance stopped long enough for the hold's lease to lapse: the sweep releases
    the hold; the job, continued later, finds its hold gone and charges nothing."""
    cfg = config(db_url, simulator.url)
    first = await start_gateway(cfg)
    await first.services.job_poller.stop(release_leases=False)  # nobody claims the job
    _, rec = await submit(first, "u1", "v-tokens", "[[sim job_output_tokens=900]] lapsed")
    assert await balance(first, "u1") == (10 - HOLD) * M
    assert await hold_leases.sweep(first.services) == []  # the lease is still good
    async with first.services.engine.begin() as conn:  # ... and now lapses
        await conn.execute(update(t.asset_holds).values(lease_until_ms=now_ms() - 1))
    assert await hold_leases.sweep(first.services) == [rec["request_id"]]
    assert await hold_leases.sweep(first.services) == []
    assert await balance(first, "u1") == 10 * M
    await first.close()

    second = await start_gateway(cfg)
    try:
        done, _ = await wait_for(second, "u1", rec["request_id"])
        assert done["status"] == "succeeded"
        assert await balance(second, "u1") == 10 * M
        assert await settled_exactly(second, "u1") == ["reserve", "expired"]
        credits = {"asset": "credit", "charge": 0, "hold": 5, "expired": True}
        assert await job_credits(second, rec["request_id"]) == credits
        [log] = await log_rows(second, done["platform_id"])
        assert log.metadata["credits"] == credits
    finally:
        await second.close()


async def test_a_claim_renews_the_hold_of_a_running_job(db_url, simulator):
    gw = await start_gateway(config(db_url, simulator.url))
    try:
        _, rec = await submit(gw, "u1", "v-tokens", "[[sim job_duration_ms=1500]] long")
        await wait_for(gw, "u1", rec["request_id"], until=("processing",))
        async with gw.services.engine.begin() as conn:  # as if the hold were about to lapse
            await conn.execute(update(t.asset_holds).values(lease_until_ms=now_ms() + 300))
        await asyncio.sleep(0.5)  # several polls (every 50 ms): each claim renews the lease
        assert await hold_leases.sweep(gw.services) == []
        [hold] = await open_holds(gw)
        assert hold.lease_until_ms > now_ms() + jobs.hold_lease_ms(gw.services) - 5_000
        done, _ = await wait_for(gw, "u1", rec["request_id"])
        assert done["status"] == "succeeded"
        assert await settled_exactly(gw, "u1") == ["reserve", "settle"]
    finally:
        await gw.close()


async def test_two_instances_end_each_job_hold_exactly_once(pg_url, simulator):
    a = await start_gateway(config(pg_url, simulator.url, redis_url=REDIS_URL, worker_id=5))
    b = await start_gateway(config(pg_url, simulator.url, redis_url=REDIS_URL, worker_id=6))
    try:
        submitted = []
        for i in range(12):
            fail = "[[sim job_fail=true]] " if i % 3 == 0 else ""
            prompt = f"{fail}[[sim job_duration_ms=300 job_output_tokens={500 * i}]] job {i}"
            status, rec = await submit((a, b)[i % 2], f"user{i}", "v-tokens", prompt)
            assert status == 200, rec
            submitted.append((f"user{i}", rec, i))
        for user, rec, i in submitted:
            done, _ = await wait_for(a, user, rec["request_id"])
            assert done["status"] == ("failed" if i % 3 == 0 else "succeeded")
        await b.flush()
        for user, rec, i in submitted:
            if i % 3 == 0:
                assert await settled_exactly(a, user) == ["reserve", "release"]
                assert await balance(a, user) == 10 * M
            else:
                assert await settled_exactly(a, user) == ["reserve", "settle"]
                assert await balance(a, user) == 10 * M - token_charge(f" job {i}", 500 * i)
            assert len(await log_rows(a, rec["platform_id"])) == 1
        assert await open_holds(a) == []
        async with a.services.engine.connect() as conn:
            settles = (
                await conn.execute(
                    select(func.count()).select_from(t.asset_ledger).where(t.asset_ledger.c.reason == "settle")
                )
            ).scalar_one()
        assert settles == 8
    finally:
        await b.close()
        await a.close()
