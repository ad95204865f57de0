"""Async jobs on http_job platforms: pending -> processing -> succeeded/failed, refunds,
deadlines, queueing, and jobs finished exactly once by several instances sharing a
PostgreSQL database."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict

import pytest
from sqlalchemy import select, update

from aigate.clock import now_ms
from aigate.store import tables as t
from tests.api.test_ai_requests import ai_config, credits, read, submit
from tests.gateway import start_gateway

REDIS_URL = os.environ.get("AIGATE_TEST_REDIS_URL", "")
A = t.ai_requests.c


@pytest.fixture
async def gw(db_url, simulator):
    gateway = await start_gateway(ai_config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


async def wait_for(
    gw, user: str, request_id: str, until=("succeeded", "failed"), timeout: float = 8.0
) -> tuple[dict, list[str]]:
    """Read the record until its status is in ``until``; also the statuses seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, rec = await read(gw, user, request_id)
        assert status == 200, rec
        if not seen or seen[-1] != rec["status"]:
            seen.append(rec["status"])
        if rec["status"] in until:
            return rec, seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"{request_id} still {seen[-1]} after {timeout}s (seen {seen})")


async def ledger(gw, request_id: str) -> list[str]:
    async with gw.services.engine.connect() as conn:
        rows = (
            await conn.execute(select(t.asset_ledger.c.reason).where(t.asset_ledger.c.request_id == request_id))
        ).all()
    return sorted(r.reason for r in rows)


async def log_rows(gw, platform_id: str) -> list:
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).where(t.usage_logs.c.request_id == platform_id))).all()


def job_gets(simulator) -> dict[str, list[float]]:
    """Times of each job's GET /v1/jobs/{id}, by job id."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in simulator.requests:
        if r["method"] == "GET" and r["path"].startswith("/v1/jobs/"):
            out[r["path"].rsplit("/", 1)[1]].append(r["time"])
    return out


def job_posts(simulator) -> int:
    return sum(1 for r in simulator.requests if r["method"] == "POST" and r["path"] == "/v1/jobs")


async def test_video_runs_to_succeeded(gw, simulator):
    for user, via in (("u1", "server"), ("u2", "client")):
        await check_video(gw, simulator, user, via)


async def check_video(gw, simulator, user: str, via: str) -> None:
    status, rec = await submit(gw, user, "video", {"prompt": "a sunrise", "seconds": 5}, via)
    assert status == 200, rec
    assert rec["status"] == "pending" and rec["module"] == "video" and rec["platform"] == "http_job"
    assert rec["custom_response"] is None and rec["response"] == ""
    assert await credits(gw, user) == 40  # reserved at submit

    done, seen = await wait_for(gw, user, rec["request_id"])
    assert done["status"] == "succeeded", done
    assert "processing" in seen
    url = done["custom_response"]["video_url"]
    assert url.startswith("https://simulator.invalid/videos/job_")
    assert done["unit_price"] == {"input_per_price": 0, "output_per_price": 0.5, "input_token": 0, "output_token": 1}
    assert done["updated_time"] > done["created_time"] and done["error"] == ""

    sent = [r for r in simulator.requests if r["method"] == "POST" and r["path"] == "/v1/jobs"][-1]
    assert sent["body"] == {"prompt": "a sunrise", "duration_s": 5, "model": "sim-video-1"}
    assert await credits(gw, user) == 40
    assert await ledger(gw, done["request_id"]) == ["reserve"]
    [log] = await log_rows(gw, done["platform_id"])
    assert log.code == 200 and log.mode == 5 and float(log.used_amount) == 0.5
    assert log.metadata["ai_request_id"] == done["request_id"] and log.metadata["job_id"] in url
    async with gw.services.engine.connect() as conn:
        row = (await conn.execute(select(t.ai_requests).where(A.user_id == user))).one()
    assert row.claimed_by is None and row.next_poll_ms is None and row.job["upstream_id"] in url


async def test_failed_and_overdue_jobs_are_refunded_once(gw):
    _, failing = await submit(gw, "u1", "video", {"prompt": "[[sim job_fail=true]] a storm", "seconds": 3})
    _, slow = await submit(gw, "u2", "video-short", {"prompt": "[[sim job_duration_ms=5000]] slow", "seconds": 9})

    done, _ = await wait_for(gw, "u1", failing["request_id"])
    assert done["status"] == "failed" and "Simulated job failure" in done["error"]
    assert done["custom_response"] is None and '"failed"' in done["response"]
    assert await credits(gw, "u1") == 50  # a client that sees `failed` sees its credits back
    assert await ledger(gw, done["request_id"]) == ["refund", "reserve"]
    [log] = await log_rows(gw, done["platform_id"])
    assert log.code == 502 and float(log.used_amount) == 0

    done, _ = await wait_for(gw, "u2", slow["request_id"])
    assert done["status"] == "failed" and done["error"].startswith("deadline exceeded")
    assert '"id":"job_' in done["response"]  # it was upstream when time ran out
    assert await credits(gw, "u2") == 50
    assert await ledger(gw, done["request_id"]) == ["refund", "reserve"]
    [log] = await log_rows(gw, done["platform_id"])
    assert log.code == 504


async def test_upstream_refusing_the_submit_fails_and_refunds(gw, simulator):
    simulator.script([{"status": 400}])
    _, rec = await submit(gw, "u1", "video", {"prompt": "bad", "seconds": 1})
    done, _ = await wait_for(gw, "u1", rec["request_id"])
    assert done["status"] == "failed" and "rejected" in done["error"]
    assert await credits(gw, "u1") == 50 and job_posts(simulator) == 1


async def test_retryable_submit_errors_are_retried(gw, simulator):
    simulator.script([{"status": 503}])
    _, rec = await submit(gw, "u1", "video", {"prompt": "again", "seconds": 1})
    done, _ = await wait_for(gw, "u1", rec["request_id"])
    assert done["status"] == "succeeded" and job_posts(simulator) == 2
    [log] = await log_rows(gw, done["platform_id"])
    assert log.retry_times == 1


async def test_jobs_queue_when_the_platform_is_full(gw, simulator):
    _, first = await submit(gw, "u1", "video-one", {"prompt": "[[sim job_duration_ms=600]] one", "seconds": 1})
    await wait_for(gw, "u1", first["request_id"], until=("processing",))
    status, second = await submit(gw, "u2", "video-one", {"prompt": "two", "seconds": 1})
    assert status == 200 and second["status"] == "queueing"
    await asyncio.sleep(0.2)  # several poll intervals: the second must still wait for a slot
    assert (await read(gw, "u2", second["request_id"]))[1]["status"] == "queueing"
    assert job_posts(simulator) == 1

    done1, _ = await wait_for(gw, "u1", first["request_id"])
    done2, seen2 = await wait_for(gw, "u2", second["request_id"])
    assert done1["status"] == done2["status"] == "succeeded"
    assert "processing" in seen2 and job_posts(simulator) == 2
    # the second job went upstream only after the first had finished
    async with gw.services.engine.connect() as conn:
        rows = {r.request_id: r for r in (await conn.execute(select(t.ai_requests))).all()}
    first_end = rows[int(first["request_id"])].updated_ms
    second_submit = rows[int(second["request_id"])].job["attempts"][0]["started_ms"]
    assert second_submit >= first_end


async def test_a_pending_job_after_a_restart_is_continued(db_url, simulator):
    """The poller is stopped before the job is submitted upstream; a new instance
    (same database) picks the job up."""
    cfg = ai_config(db_url, simulator.url)
    first = await start_gateway(cfg)
    await first.services.job_poller.stop(release_leases=False)
    _, rec = await submit(first, "u1", "video", {"prompt": "after restart", "seconds": 1})
    await first.close()
    assert job_posts(simulator) == 0
    second = await start_gateway(cfg)
    try:
        done, _ = await wait_for(second, "u1", rec["request_id"])
        assert done["status"] == "succeeded"
    finally:
        await second.close()


# --- several instances on one PostgreSQL database


def pg_config(pg_url: str, sim_url: str, worker_id: int) -> dict:
    return ai_config(pg_url, sim_url, redis_url=REDIS_URL, worker_id=worker_id)


async def test_a_killed_instances_job_is_finished_by_another(pg_url, simulator):
    a = await start_gateway(pg_config(pg_url, simulator.url, 1))
    b = None
    try:
        _, rec = await submit(a, "u1", "video", {"prompt": "[[sim job_duration_ms=800]] survive", "seconds": 2})
        await wait_for(a, "u1", rec["request_id"], until=("processing",))
        while not job_gets(simulator):  # submitted upstream and polled by A
            await asyncio.sleep(0.01)
        # A dies mid-job: its poller stops without handing anything back, and the job
        # stays claimed by it until its lease runs out
        await a.services.job_poller.stop(release_leases=False)
        poller_a = a.services.job_poller.claimer

        async def lease_until(ms: int) -> None:
            async with a.services.engine.begin() as conn:
                await conn.execute(update(t.ai_requests).values(claimed_by=poller_a, claim_until_ms=ms))

        await lease_until(now_ms() + 60_000)
        b = await start_gateway(pg_config(pg_url, simulator.url, 2))
        await asyncio.sleep(0.05)  # a poll A had in flight has landed
        polls_before = sum(len(v) for v in job_gets(simulator).values())
        await asyncio.sleep(0.25)
        assert sum(len(v) for v in job_gets(simulator).values()) == polls_before  # the lease holds
        until = now_ms() + 50
        await lease_until(until)  # ... and now runs out
        done, _ = await wait_for(b, "u1", rec["request_id"])
        assert done["status"] == "succeeded" and done["custom_response"]["video_url"]
        polls_by_b = sorted(x for v in job_gets(simulator).values() for x in v)[polls_before:]
        assert polls_by_b and polls_by_b[0] * 1000 >= until - 5  # only once the lease had expired
        assert job_posts(simulator) == 1  # continued, not submitted again
        assert await ledger(b, rec["request_id"]) == ["reserve"]
        assert len(await log_rows(b, rec["platform_id"])) == 1
    finally:
        if b is not None:
            await b.close()
        await a.close()


async def test_two_instances_poll_and_settle_each_job_once(pg_url, simulator):
    a = await start_gateway(pg_config(pg_url, simulator.url, 3))
    b = await start_gateway(pg_config(pg_url, simulator.url, 4))
    try:
        jobs = []
        for i in range(12):
            gw = (a, b)[i % 2]
            fail = "[[sim job_fail=true]] " if i % 3 == 0 else ""
            _, rec = await submit(
                gw, f"user{i}", "video", {"prompt": f"{fail}[[sim job_duration_ms=300]] {i}", "seconds": 1}
            )
            assert rec["status"] == "pending"
            jobs.append((f"user{i}", rec))
        results = [await wait_for(a, user, rec["request_id"]) for user, rec in jobs]
        assert [r["status"] for r, _ in results] == ["failed" if i % 3 == 0 else "succeeded" for i in range(12)]

        assert job_posts(simulator) == 12
        gets = job_gets(simulator)
        assert len(gets) == 12
        for times in gets.values():  # one poller at a time: never two polls within an interval
            gaps = [y - x for x, y in itertools.pairwise(times)]
            assert min(gaps, default=1) >= 0.045, gaps
        for i, (user, rec) in enumerate(jobs):
            expected = ["refund", "reserve"] if i % 3 == 0 else ["reserve"]
            assert await ledger(a, rec["request_id"]) == expected
            assert await credits(a, user) == (50 if i % 3 == 0 else 40)
        await b.flush()
        for _, rec in jobs:
            assert len(await log_rows(a, rec["platform_id"])) == 1
        async with a.services.engine.connect() as conn:
            attempts = [r.job["attempts"] for r in (await conn.execute(select(t.ai_requests))).all()]
        assert all(len(x) == 1 for x in attempts)
    finally:
        await b.close()
        await a.close()
