"""Generic asynchronous job platforms (video generation and the like).

Such APIs all look alike: submit a job, get an id, poll until a terminal status. The
platform's ``options`` describe one API declaratively::

    submit:     {method: POST, path: /v1/jobs, headers: {...}}   # headers optional
    job_id:     id                       # JMESPath over the submit response
    poll:       {method: GET, path: "/v1/jobs/{job_id}"}
    status:     status                   # JMESPath over the poll response
    status_map: {queued: processing, running: processing, succeeded: succeeded, failed: failed}
    error:      error.message            # JMESPath, optional
    usage:      usage                    # JMESPath to the final result's usage (default)
    auth:       bearer | header:<name> | none   # default bearer with the api key

Upstream statuses missing from ``status_map`` count as ``processing``, so a job never
ends because of a status we were not told about.

``usage`` selects what a succeeded job used, read like OpenAI's ``usage`` object
(``input_tokens``/``output_tokens`` or ``prompt_tokens``/``completion_tokens``). A
multiselect maps other measures onto those fields, e.g. ``"{output_tokens: result.seconds}"``
bills seconds of video at the model's ``output_price`` per ``output_price_unit``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import aiohttp
import jmespath

from .base import JsonResult, Platform, Usage
from .http import JSON_HEADERS, join_url, protocol_error, request_json
from .openai import parse_usage

PROCESSING = "processing"
DEFAULT_STATUS_MAP = {
    "queued": PROCESSING,
    "running": PROCESSING,
    "processing": PROCESSING,
    "succeeded": "succeeded",
    "failed": "failed",
}


@lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def search(expression: str, data: Any) -> Any:
    return _compiled(expression).search(data)


def auth_headers(platform: Platform) -> dict[str, str]:
    auth = platform.options.get("auth") or "bearer"
    key = platform.api_key
    if not key or auth == "none":
        return {}
    if auth.startswith("header:"):
        return {auth[len("header:") :].strip(): key}
    return {"Authorization": f"Bearer {key}"}


def _headers(platform: Platform, step: dict[str, Any], with_body: bool) -> dict[str, str]:
    headers = dict(JSON_HEADERS) if with_body else {}
    headers.update(auth_headers(platform))
    headers.update(platform.options.get("headers") or {})
    headers.update(step.get("headers") or {})
    return headers


def _step(platform: Platform, name: str) -> dict[str, Any]:
    step = platform.options.get(name)
    if not isinstance(step, dict) or not step.get("path"):
        raise KeyError(f"platform {platform.id}: options.{name}.path is required")
    return step


def _upstream_id(data: Any) -> str:
    return str(data.get("id", "")) if isinstance(data, dict) else ""


async def submit(session: aiohttp.ClientSession, platform: Platform, body: dict[str, Any]) -> tuple[str, JsonResult]:
    """Create a job: ``(job id, the submit response)``."""
    step = _step(platform, "submit")
    url = join_url(platform.base_url, step["path"])
    data, raw = await request_json(
        session,
        platform,
        step.get("method", "POST").upper(),
        url,
        headers=_headers(platform, step, with_body=True),
        body=body,
    )
    job_id = search(platform.options.get("job_id") or "id", data)
    if job_id is None or job_id == "":
        raise protocol_error(f"upstream {platform.id} returned no job id", raw)
    return str(job_id), JsonResult(data=data, raw=raw, upstream_id=str(job_id))


async def poll(session: aiohttp.ClientSession, platform: Platform, job_id: str) -> tuple[str, str, JsonResult]:
    """Check a job: ``(processing | succeeded | failed, error text, the poll response)``."""
    step = _step(platform, "poll")
    path = step["path"].replace("{job_id}", quote(job_id, safe=""))
    data, raw = await request_json(
        session,
        platform,
        step.get("method", "GET").upper(),
        join_url(platform.base_url, path),
        headers=_headers(platform, step, with_body=False),
    )
    raw_status = search(platform.options.get("status") or "status", data)
    status_map = platform.options.get("status_map") or DEFAULT_STATUS_MAP
    status = status_map.get(str(raw_status), PROCESSING) if raw_status is not None else PROCESSING
    error = ""
    error_expr = platform.options.get("error")
    if error_expr:
        found = search(error_expr, data)
        if found is not None and found != "":
            error = found if isinstance(found, str) else str(found)
    result = JsonResult(data=data, raw=raw, upstream_id=_upstream_id(data) or job_id)
    return status, error, result


def usage(platform: Platform, data: Any) -> Usage:
    """What a succeeded job used (the ``usage`` option over its final poll response)."""
    found = search(platform.options.get("usage") or "usage", data)
    if not isinstance(found, dict):
        return Usage()
    # counts may come as fractions or strings (seconds of video): whole units, rounded up
    return parse_usage({k: v if isinstance(v, dict) else _whole(v) for k, v in found.items()})


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return math.ceil(number) if math.isfinite(number) and number > 0 else 0
