"""A generic asynchronous job API, as video / image job platforms offer it.

``POST /v1/jobs`` (any JSON body) -> ``{"id": "job_...", "status": "queued", ...}``;
``GET /v1/jobs/{id}`` -> the job's status, computed from the time since submit:
``queued`` for the first 10% of ``job_duration_ms``, then ``running`` (progress rising
from 10 towards 99), then ``succeeded`` (progress 100, ``result.video_url`` and ``usage``:
``input_tokens`` counted from the body's ``prompt``, ``output_tokens`` from the
``job_output_tokens`` switch; none with ``usage=false``) or, when the ``job_fail`` switch
was set at submit, ``failed`` (progress 100, ``error.message``).
Jobs live in memory until ``POST /_sim/reset``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from aigate.simulator import text
from aigate.simulator.openai import bearer_key, check_key

if TYPE_CHECKING:
    from aigate.simulator.server import Call

VIDEO_URL = "https://simulator.invalid/videos/{}.mp4"
QUEUED_FRACTION = 0.1


class JobsDialect:
    """``Authorization: Bearer`` auth; errors as ``{"error": {"message": ...}}``."""

    def precheck(self, call: Call) -> web.Response | None:
        return check_key(call, bearer_key(call.request))

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        error: dict[str, Any] = {"message": message}
        if code:
            error["code"] = code
        return orjson.dumps({"error": error})


JOBS = JobsDialect()


@dataclass(slots=True)
class Job:
    id: str
    submitted: float  # time.monotonic() at submit
    created_at: int  # epoch seconds
    duration_s: float
    fail: bool
    usage: dict[str, int] | None  # reported once the job succeeded

    def view(self, now: float) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` reports it at monotonic time ``now``."""
        elapsed = now - self.submitted
        data: dict[str, Any] = {"id": self.id, "object": "job", "created_at": self.created_at}
        if elapsed >= self.duration_s:
            data["progress"] = 100
            if self.fail:
                data["status"] = "failed"
                data["error"] = {"message": "Simulated job failure (aigate provider simulator)."}
            else:
                data["status"] = "succeeded"
                data["result"] = {"video_url": VIDEO_URL.format(self.id)}
                if self.usage is not None:
                    data["usage"] = self.usage
        elif elapsed < self.duration_s * QUEUED_FRACTION:
            data["status"], data["progress"] = "queued", 0
        else:
            data["status"] = "running"
            data["progress"] = max(1, min(99, int(100 * elapsed / self.duration_s)))
        return data


async def submit(call: Call) -> web.Response:
    body = call.body_object()
    sw = call.switches
    prompt = body.get("prompt")
    tokens = text.count_tokens(text.strip_directives(prompt)) if isinstance(prompt, str) else 0
    usage = {
        "input_tokens": tokens,
        "output_tokens": sw.job_output_tokens,
        "total_tokens": tokens + sw.job_output_tokens,
    }
    job = Job(
        id=text.new_id("job_"),
        submitted=time.monotonic(),
        created_at=int(time.time()),
        duration_s=sw.job_duration_ms / 1000,
        fail=sw.job_fail,
        usage=usage if sw.usage else None,
    )
    call.state.jobs[job.id] = job
    return call.json({"id": job.id, "object": "job", "status": "queued", "progress": 0, "created_at": job.created_at})


async def poll(call: Call) -> web.Response:
    job = call.state.jobs.get(call.request.match_info["id"])
    if job is None:
        return call.error(404, "job not found")
    return call.json(job.view(time.monotonic()))


ROUTES = [
    ("POST", "/v1/jobs", JOBS, submit, False),
    ("GET", "/v1/jobs/{id}", JOBS, poll, False),
]
