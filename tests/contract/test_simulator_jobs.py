"""The simulator's generic asynchronous job API, over real HTTP."""

from __future__ import annotations

import asyncio
import time

AUTH = {"Authorization": "Bearer job-key"}
TERMINAL = {"succeeded", "failed"}


async def poll_until_done(sim, job_id: str, timeout: float = 3.0) -> list[dict]:
    """Every poll answer until a terminal status, polling every 20 ms."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = await sim.get(f"/v1/jobs/{job_id}", headers=AUTH)
        assert reply.status == 200
        seen.append(reply.json())
        if seen[-1]["status"] in TERMINAL:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


def distinct(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


async def test_job_lifecycle(sim):
    submitted = await sim.post(
        "/v1/jobs", {"model": "video-1", "prompt": "a sunset"}, headers={**AUTH, "x-sim-job-duration-ms": "600"}
    )
    assert submitted.status == 200
    job = submitted.json()
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    seen = await poll_until_done(sim, job["id"])
    statuses = [job["status"]] + [s["status"] for s in seen]
    assert distinct(statuses) == ["queued", "running", "succeeded"]
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)
    assert all(0 <= p <= 100 for p in progress)
    final = seen[-1]
    assert final["progress"] == 100
    assert final["result"] == {"video_url": f"https://simulator.invalid/videos/{job['id']}.mp4"}
    assert "error" not in final
    assert all("result" not in s for s in seen[:-1])


async def test_poll_reports_queued_first(sim):
    job = (await sim.post("/v1/jobs", {}, headers={**AUTH, "x-sim-job-duration-ms": "10000"})).json()
    polled = (await sim.get(f"/v1/jobs/{job['id']}", headers=AUTH)).json()
    assert polled["id"] == job["id"]
    assert polled["status"] == "queued"
    assert polled["progress"] == 0


async def test_job_fail_switch_is_read_at_submit(sim):
    job = (
        await sim.post(
            "/v1/jobs", {"prompt": "x"}, headers={**AUTH, "x-sim-job-fail": "true", "x-sim-job-duration-ms": "50"}
        )
    ).json()
    final = (await poll_until_done(sim, job["id"]))[-1]
    assert final["status"] == "failed"
    assert final["error"]["message"]
    assert "result" not in final


async def test_job_switches_from_a_prompt_directive(sim):
    job = (await sim.post("/v1/jobs", {"prompt": "[[sim job_fail=1 job_duration_ms=0]] a cat"}, headers=AUTH)).json()
    reply = await sim.get(f"/v1/jobs/{job['id']}", headers=AUTH)
    assert reply.json()["status"] == "failed"


async def test_zero_duration_job_is_done_at_once(sim):
    job = (await sim.post("/v1/jobs", {}, headers={**AUTH, "x-sim-job-duration-ms": "0"})).json()
    assert (await sim.get(f"/v1/jobs/{job['id']}", headers=AUTH)).json()["status"] == "succeeded"


async def test_unknown_job_is_404(sim):
    reply = await sim.get("/v1/jobs/job_nope", headers=AUTH)
    assert reply.status == 404
    assert reply.json() == {"error": {"message": "job not found"}}


async def test_jobs_require_a_bearer_key(sim):
    reply = await sim.post("/v1/jobs", {"prompt": "x"})
    assert reply.status == 401
    assert reply.json()["error"]["message"]


async def test_status_switch_on_jobs(sim):
    reply = await sim.post(
        "/v1/jobs", {"prompt": "x"}, headers={**AUTH, "x-sim-status": "429", "x-sim-retry-after": "3"}
    )
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "3"
    assert "message" in reply.json()["error"]


async def test_reset_forgets_jobs(sim, simulator):
    job = (await sim.post("/v1/jobs", {}, headers=AUTH)).json()
    simulator.reset()
    assert (await sim.get(f"/v1/jobs/{job['id']}", headers=AUTH)).status == 404
