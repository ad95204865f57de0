"""A gateway configuration in which every App API outcome can be produced on purpose:
strategies that succeed, stream, run async jobs, hit their limit, cost more than a user
has, time out upstream, and cannot be served. Shared by the live contract tests, the
TypeScript client's tests and the browser test (through ``launch``)."""

from __future__ import annotations

from tests.gateway import base_config

MAX_BODY_BYTES = 64 * 1024
# simulator directives (see aigate/simulator/switches.py) carried by a prompt
SLOW = "[[sim latency_ms=500]]"  # later than sim-slow's first_byte_s
BROKEN = "[[sim status=500]]"
JOB_OPTIONS = {
    "submit": {"method": "POST", "path": "/v1/jobs"},
    "job_id": "id",
    "poll": {"method": "GET", "path": "/v1/jobs/{job_id}"},
    "status": "status",
    "status_map": {"queued": "processing", "running": "processing", "succeeded": "succeeded", "failed": "failed"},
    "error": "error.message",
    "poll_interval_s": 0.05,
    "deadline_s": 10,
    "lease_s": 2,
}


def contract_config(db_url: str, sim_url: str, *, redis_url: str = "") -> dict:
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["server"]["max_body_bytes"] = MAX_BODY_BYTES
    doc["models"] += [
        {"name": "dall-e-3", "price": {"per_request_price": 0.04}},
        {"name": "sim-video-1", "price": {"per_request_price": 0.5}},
    ]
    doc["platforms"] += [
        # answers the first byte late: calls through it time out
        {
            "id": "sim-slow",
            "type": "openai",
            "base_url": f"{sim_url}/v1",
            "api_key": "sk-sim",
            "models": ["gpt-4o-mini"],
            "timeout": {"connect_s": 1, "first_byte_s": 0.1, "total_s": 1},
        },
        {
            "id": "sim-off",
            "type": "openai",
            "base_url": f"{sim_url}/v1",
            "api_key": "sk-sim",
            "models": ["gpt-4o-mini"],
            "enabled": False,
        },
        {
            "id": "sim-video",
            "type": "http_job",
            "base_url": sim_url,
            "api_key": "video-sim",
            "models": ["sim-video-1"],
            "options": JOB_OPTIONS,
            "timeout": {"connect_s": 2, "first_byte_s": 1, "total_s": 2},
        },
    ]
    app = doc["apps"][0]
    app["strategies"] += [
        {"name": "once", "model": "gpt-4o-mini", "platforms": ["sim-openai"], "limit": {"count": 1, "period": "day"}},
        {
            "name": "pricey",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "cost": {"asset": "ai_credit", "per_request": 1000},
        },
        {"name": "slow", "model": "gpt-4o-mini", "platforms": ["sim-slow"], "system_prompt": SLOW},
        {"name": "broken", "model": "gpt-4o-mini", "platforms": ["sim-openai"], "system_prompt": BROKEN},
        {"name": "off", "model": "gpt-4o-mini", "platforms": ["sim-off"]},
        {
            "name": "dell-3",
            "module": "image",
            "model": "dall-e-3",
            "platforms": ["sim-openai"],
            "request": {"prompt": "{{ .prompt }}", "size": "1024x1024", "n": 1},
            "custom_response": {"image_urls": "data[].url"},
            "cost": {"asset": "ai_credit", "per_request": 5},
        },
        {
            "name": "video",
            "module": "video",
            "model": "sim-video-1",
            "platforms": ["sim-video"],
            "request": {"prompt": "{{ .prompt }}"},
            "custom_response": {"video_url": "result.video_url"},
            "cost": {"asset": "ai_credit", "per_request": 10},
        },
    ]
    app["instructions"] = [
        {
            "name": "test",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "max_token": 100,
            "messages": [
                {"role": "system", "content": "you are a professional {{ .role }}."},
                {"role": "user", "content": "Tell me about {{ .question }}."},
            ],
        },
        {
            "name": "pricey",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "cost": {"asset": "ai_credit", "per_request": 1000},
            "messages": [{"role": "user", "content": "hi"}],
        },
        {
            "name": "once",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "limit": {"count": 1, "period": "day"},
            "messages": [{"role": "user", "content": "hi"}],
        },
        {
            "name": "slow",
            "model": "gpt-4o-mini",
            "platforms": ["sim-slow"],
            "messages": [{"role": "user", "content": SLOW}],
        },
        {
            "name": "broken",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "messages": [{"role": "user", "content": BROKEN}],
        },
        {
            "name": "off",
            "model": "gpt-4o-mini",
            "platforms": ["sim-off"],
            "messages": [{"role": "user", "content": "hi"}],
        },
    ]
    return doc
