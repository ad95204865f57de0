"""The dashboard over HTTP: sums from the rollups equal the inserted log rows."""

from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from aigate.clock import now_ms
from tests.gateway import APP_ID, base_config, start_gateway

SIM_URL = "http://127.0.0.1:9"
OTHER = "APPOTHER"
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "used_amount", "avg_ttfb_milliseconds")
_seq = count()


def log_row(created_ms: int, **extra: Any) -> dict:
    n = next(_seq)
    row = {
        "request_id": str(800_000 + n),
        "created_ms": created_ms,
        "request_ms": created_ms,
        "code": 200,
        "app_id": APP_ID,
        "model": "gpt-4o-mini",
        "user": "u",
        "metadata": {"strategy": "free-normal"},
        "input_tokens": 10 + n % 7,
        "output_tokens": 3 + n % 5,
        "ttfb_ms": 100 + n % 13,
        "price": {},
        "used_amount": Decimal("0.000001") * (1 + n % 4),
    }
    row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
    row.update(extra)
    return row


@pytest.fixture
async def gw(db_url):
    gateway = await start_gateway(base_config(db_url, SIM_URL))
    yield gateway
    await gateway.close()


async def dashboard(gw, params: dict) -> tuple[int, Any]:
    async with gw.session.get(gw.url + "/api/dashboard", params=params, headers=gw.admin_headers()) as resp:
        return resp.status, await resp.json()


def sums(rows: list[dict]) -> dict:
    n = len(rows)
    ttfb = sum(r["ttfb_ms"] for r in rows)
    return {
        "requests": n,
        "errors": sum(1 for r in rows if r["code"] != 200),
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "total_tokens": sum(r["total_tokens"] for r in rows),
        "used_amount": float(sum((r["used_amount"] for r in rows), Decimal(0))),
        "avg_ttfb_milliseconds": round(ttfb / n, 1) if n else 0,
    }


def assert_fields(got: dict, want: dict) -> None:
    for name in FIELDS:
        assert got[name] == pytest.approx(want[name], abs=1e-9), name


def expected(rows: list[dict], start: int, end: int, span: int, group: str | None) -> dict:
    """What the dashboard must show: rows whose minute starts in [start, end)."""
    chosen = [
        r for r in rows if start <= r["created_ms"] // MINUTE * MINUTE < end and (group is None or r["app_id"] == group)
    ]
    by_bucket: dict[int, list] = {}
    by_model: dict[str, dict[int, list]] = {}
    by_strategy: dict[str, dict[int, list]] = {}
    for r in chosen:
        b = r["created_ms"] // span * span
        by_bucket.setdefault(b, []).append(r)
        by_model.setdefault(r["model"], {}).setdefault(b, []).append(r)
        by_strategy.setdefault(r["metadata"].get("strategy", ""), {}).setdefault(b, []).append(r)
    return {"rows": chosen, "by_bucket": by_bucket, "by_model": by_model, "by_strategy": by_strategy}


def check(data: dict, rows: list[dict], start: int, end: int, span: int, group: str | None) -> None:
    want = expected(rows, start, end, span, group)
    assert want["rows"], "the case must cover some rows"
    assert set(data) == {
        "group",
        "timespan",
        "start_timestamp",
        "end_timestamp",
        "timestamps",
        "totals",
        "series",
        "by_model",
        "by_strategy",
    }
    assert_fields(data["totals"], sums(want["rows"]))
    buckets = list(range(start // span * span, end, span))
    assert data["timestamps"] == buckets

    def check_series(series: dict, per_bucket: dict[int, list]) -> None:
        assert set(series) == set(FIELDS)
        for name in FIELDS:
            assert len(series[name]) == len(buckets), name
        for i, b in enumerate(buckets):
            assert_fields({name: series[name][i] for name in FIELDS}, sums(per_bucket.get(b, [])))

    check_series(data["series"], want["by_bucket"])
    for key, name in (("by_model", "model"), ("by_strategy", "strategy")):
        assert {e[name] for e in data[key]} == set(want[key])
        requests = [e["totals"]["requests"] for e in data[key]]
        assert requests == sorted(requests, reverse=True)
        for entry in data[key]:
            assert set(entry) == {name, "totals", "series"}
            per_bucket = want[key][entry[name]]
            assert_fields(entry["totals"], sums([r for rs in per_bucket.values() for r in rs]))
            check_series(entry["series"], per_bucket)


async def test_sums_equal_the_inserted_rows(gw):
    now = now_ms()
    models = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]
    strategies = ["free-normal", "pro", ""]
    rows = []
    for i in range(240):
        rows.append(
            log_row(
                now - 3 * DAY + i * 1_111_111 % (3 * DAY),
                model=models[i % 3],
                metadata={"strategy": strategies[i % 4 % 3]} if i % 5 else {},
                code=200 if i % 6 else 502,
                app_id=APP_ID if i % 7 else OTHER,
            )
        )
    for gw_row in rows:
        await gw.services.writer.put("usage_log", gw_row)
    await gw.flush()

    hour = now // HOUR * HOUR
    cases = [
        # unaligned edges: partial hours come from the minute rollups
        (
            {
                "start_timestamp": now - 30 * HOUR - 17 * MINUTE,
                "end_timestamp": now - 2 * HOUR + 5 * MINUTE,
                "timespan": "hour",
            },
            None,
        ),
        ({"start_timestamp": hour - 2 * DAY, "end_timestamp": hour, "timespan": "hour"}, None),
        ({"start_timestamp": now - 3 * DAY, "end_timestamp": now + MINUTE, "timespan": "day"}, None),
        ({"start_timestamp": now - 3 * DAY, "end_timestamp": now + MINUTE, "timespan": "day", "group": APP_ID}, APP_ID),
        ({"start_timestamp": now - 20 * HOUR, "end_timestamp": now - 15 * HOUR, "timespan": "minute"}, None),
        ({"start_timestamp": now - 40 * HOUR, "end_timestamp": now, "group": OTHER}, OTHER),
    ]
    for params, group in cases:
        status, body = await dashboard(gw, params)
        assert status == 200 and body["success"] is True, (params, body)
        data = body["data"]
        span = {"minute": MINUTE, "hour": HOUR, "day": DAY}[params.get("timespan", "hour")]
        assert data["timespan"] == params.get("timespan", "hour") and data["group"] == (group or "")
        assert data["start_timestamp"] == params["start_timestamp"]
        assert data["end_timestamp"] == params["end_timestamp"]
        check(data, rows, params["start_timestamp"], params["end_timestamp"], span, group)

    # the default range: the last 24 hours by hour
    status, body = await dashboard(gw, {})
    data = body["data"]
    assert status == 200 and data["timespan"] == "hour"
    assert data["end_timestamp"] - data["start_timestamp"] == DAY
    check(data, rows, data["start_timestamp"], data["end_timestamp"], HOUR, None)
    # an unknown group: zeros, not an error
    status, body = await dashboard(gw, {"group": "NOSUCHAPP"})
    assert status == 200 and body["data"]["totals"]["requests"] == 0
    assert body["data"]["by_model"] == [] and set(body["data"]["series"]["requests"]) == {0}


async def test_validation_errors_name_the_parameter(gw):
    bad = [
        ({"timespan": "week"}, "timespan"),
        ({"start_timestamp": "abc"}, "start_timestamp"),
        ({"end_timestamp": "-5"}, "end_timestamp"),
        ({"start_timestamp": 2000, "end_timestamp": 1000}, "end_timestamp"),
        ({"start_timestamp": 0, "end_timestamp": 30 * DAY, "timespan": "minute"}, "timespan"),
        ({"group": "g" * 65}, "group"),
    ]
    for params, name in bad:
        status, body = await dashboard(gw, params)
        assert status == 400 and body["success"] is False and body["data"] is None, params
        assert body["message"].startswith(name), (params, body["message"])
    async with gw.session.get(gw.url + "/api/dashboard") as resp:
        assert resp.status == 401 and (await resp.json())["success"] is False
