"""Generic job adapter (submit / poll described by options) against the simulator's job API."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from aigate.providers import http_job
from aigate.providers.base import Platform, Timeouts, UpstreamError
from aigate.simulator.server import start_simulator

KEY = "job-test-key"
OPTIONS = {
    "submit": {"method": "POST", "path": "/v1/jobs", "headers": {"x-team": "video"}},
    "job_id": "id",
    "poll": {"method": "GET", "path": "/v1/jobs/{job_id}"},
    "status": "status",
    "status_map": {
        "queued": "processing",
        "running": "processing",
        "succeeded": "succeeded",
        "failed": "failed",
    },
    "error": "error.message",
}


@pytest.fixture
async def sim():
    handle = await start_simulator(port=0, job_duration_ms=150)
    yield handle
    await handle.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def platform(sim, **options) -> Platform:
    return Platform(
        id="video",
        number=5,
        type="http_job",
        base_url=sim.url + "/",
        api_key=KEY,
        timeouts=Timeouts(connect_s=1, first_byte_s=2, total_s=5),
        options={**OPTIONS, **options},
    )


async def wait_until_done(session, p: Platform, job_id: str) -> tuple[str, str, object]:
    for _ in range(50):
        status, error, result = await http_job.poll(session, p, job_id)
        if status != "processing":
            return status, error, result
        await asyncio.sleep(0.02)
    raise AssertionError("job never finished")


async def test_submit_and_poll_to_succeeded(sim, session) -> None:
    p = platform(sim)
    body = {"model": "video-1", "prompt": "a sunrise"}
    job_id, submitted = await http_job.submit(session, p, body)

    assert job_id.startswith("job_")
    assert submitted.data["status"] == "queued" and submitted.upstream_id == job_id
    sent = sim.requests[-1]
    assert (sent["method"], sent["path"], sent["body"]) == ("POST", "/v1/jobs", body)
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["headers"]["x-team"] == "video"

    status, error, result = await http_job.poll(session, p, job_id)
    assert (status, error) == ("processing", "")
    assert sim.requests[-1]["method"] == "GET"
    assert sim.requests[-1]["path"] == f"/v1/jobs/{job_id}"

    status, error, result = await wait_until_done(session, p, job_id)
    assert (status, error) == ("succeeded", "")
    assert result.data["result"]["video_url"].endswith(f"{job_id}.mp4")
    assert result.raw.startswith(b"{")


async def test_failed_job_reports_the_error_text(sim, session) -> None:
    p = platform(sim)
    sim.script([{"job_fail": True, "job_duration_ms": 20}])
    job_id, _ = await http_job.submit(session, p, {"prompt": "x"})
    status, error, _ = await wait_until_done(session, p, job_id)
    assert status == "failed"
    assert error == "Simulated job failure (aigate provider simulator)."


async def test_unmapped_status_counts_as_processing(sim, session) -> None:
    p = platform(sim, status_map={"succeeded": "succeeded"})
    job_id, _ = await http_job.submit(session, p, {"prompt": "x"})
    status, _, result = await http_job.poll(session, p, job_id)
    assert result.data["status"] == "queued" and status == "processing"


async def test_auth_variants(sim, session) -> None:
    p = platform(sim, auth="header:x-api-key")
    with pytest.raises(UpstreamError) as err:  # the simulator wants a bearer token
        await http_job.submit(session, p, {"prompt": "x"})
    assert (err.value.status, err.value.retryable) == (401, False)
    headers = sim.requests[-1]["headers"]
    assert headers["x-api-key"] == KEY and "authorization" not in headers

    p = platform(sim, auth="none")
    with pytest.raises(UpstreamError):
        await http_job.submit(session, p, {"prompt": "x"})
    headers = sim.requests[-1]["headers"]
    assert "authorization" not in headers and "x-api-key" not in headers


async def test_errors(sim, session) -> None:
    p = platform(sim)
    with pytest.raises(UpstreamError) as err:
        await http_job.poll(session, p, "job_missing")
    assert (err.value.status, err.value.retryable, err.value.message) == (
        404,
        False,
        "job not found",
    )

    sim.script([{"status": 503}])
    with pytest.raises(UpstreamError) as err:
        await http_job.submit(session, p, {"prompt": "x"})
    assert (err.value.status, err.value.retryable) == (503, True)

    p = platform(sim, job_id="job.identifier")
    with pytest.raises(UpstreamError) as err:
        await http_job.submit(session, p, {"prompt": "x"})
    assert err.value.kind == "protocol"
