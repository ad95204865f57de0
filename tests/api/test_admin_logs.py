"""Admin log search, detail and export over HTTP (seed 001), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from aigate.api.admin import logs as admin_logs
from aigate.clock import iso_ms, now_ms
from aigate.config.schema import Price
from aigate.engine.pricing import price_snapshot
from tests.gateway import APP_ID, base_config, start_gateway

SIM_URL = "http://127.0.0.1:9"  # these tests never call a provider
OTHER = "APPOTHER"
HOUR = 3_600_000
DAY = 86_400_000
_seq = count()

LOG_KEYS = {
    "channel",
    "code",
    "content",
    "created_at",
    "endpoint",
    "group",
    "id",
    "ip",
    "metadata",
    "mode",
    "model",
    "price",
    "request_at",
    "request_detail",
    "request_id",
    "retry_at",
    "retry_times",
    "token_id",
    "token_name",
    "ttfb_milliseconds",
    "usage",
    "used_amount",
    "user",
}


def log_row(created_ms: int, **extra: Any) -> dict:
    n = next(_seq)
    row = {
        "request_id": str(900_000 + n),
        "created_ms": created_ms,
        "request_ms": created_ms - 5,
        "retry_ms": None,
        "retry_times": 0,
        "code": 200,
        "content": "",
        "endpoint": "/bp/ai/chat",
        "app_id": APP_ID,
        "channel": 1,
        "mode": 1,
        "model": "gpt-4o-mini",
        "ip": "10.0.0.1",
        "user": "alice",
        "token_id": 0,
        "token_name": "",
        "ttfb_ms": 120,
        "metadata": {"strategy": "free-normal"},
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_tokens": 0,
        "cache_creation_tokens": 0,
        "image_input_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 120,
        "web_search_count": 0,
        "price": {},
        "used_amount": Decimal("0.000027"),
    }
    row.update(extra)
    return row


@pytest.fixture
async def gw(db_url):
    gateway = await start_gateway(base_config(db_url, SIM_URL))
    yield gateway
    await gateway.close()


async def put_all(gw, rows: list[dict]) -> None:
    for row in rows:
        await gw.services.writer.put("usage_log", row)
    await gw.flush()


async def get(gw, path: str, params: dict | None = None, *, auth: bool = True) -> tuple[int, Any]:
    headers = gw.admin_headers() if auth else {}
    async with gw.session.get(gw.url + path, params=params or {}, headers=headers) as resp:
        if resp.content_type == "text/csv":
            return resp.status, await resp.text()
        return resp.status, await resp.json()


async def test_log_object_has_exactly_the_seed_fields(gw):
    t0 = now_ms() - 60_000
    price = price_snapshot(Price(input_price=Decimal("0.15"), output_price=Decimal("0.6")))
    full = log_row(
        t0,
        retry_ms=t0 + 7,
        retry_times=2,
        code=502,
        content="upstream 502",
        channel=3,
        mode=1,
        token_id=7,
        token_name="sdk",
        metadata={"strategy": "free-normal", "k": "v"},
        input_tokens=1234,
        output_tokens=567,
        cached_tokens=34,
        cache_creation_tokens=5,
        image_input_tokens=6,
        reasoning_tokens=8,
        total_tokens=1801,
        web_search_count=1,
        price=price,
        used_amount=Decimal("0.0005253"),
        request_body='{"messages":[]}',
        request_body_truncated=False,
        response_body="x" * 10,
        response_body_truncated=True,
    )
    bare = log_row(t0 - 1000)
    await put_all(gw, [full, bare])

    status, body = await get(gw, f"/api/log/{APP_ID}/search")
    assert status == 200 and body["success"] is True and body["message"] == ""
    data = body["data"]
    assert set(data) == {"channels", "logs", "models", "token_names", "total"}
    assert data["total"] == 2 and data["channels"] == [1, 3]
    assert data["models"] == ["gpt-4o-mini"] and data["token_names"] == ["sdk"]
    first, second = data["logs"]
    assert set(first) == LOG_KEYS
    log_id = first["id"]
    assert first == {
        "channel": 3,
        "code": 502,
        "content": "upstream 502",
        "created_at": iso_ms(t0),
        "endpoint": "/bp/ai/chat",
        "group": APP_ID,
        "id": log_id,
        "ip": "10.0.0.1",
        "metadata": {"strategy": "free-normal", "k": "v"},
        "mode": 1,
        "model": "gpt-4o-mini",
        "price": {
            "cache_creation_price": 0,
            "cache_creation_price_unit": 1_000_000,
            "cached_price": 0,
            "cached_price_unit": 1_000_000,
            "image_input_price": 0,
            "image_input_price_unit": 1_000_000,
            "input_price": 0.15,
            "input_price_unit": 1_000_000,
            "output_price": 0.6,
            "output_price_unit": 1_000_000,
            "per_request_price": 0,
            "thinking_mode_output_price": 0,
            "thinking_mode_output_price_unit": 1_000_000,
            "web_search_price": 0,
            "web_search_price_unit": 1,
        },
        "request_at": iso_ms(t0 - 5),
        "request_detail": {
            "id": log_id,
            "log_id": log_id,
            "request_body": '{"messages":[]}',
            "request_body_truncated": False,
            "response_body": "x" * 10,
            "response_body_truncated": True,
        },
        "request_id": full["request_id"],
        "retry_at": iso_ms(t0 + 7),
        "retry_times": 2,
        "token_id": 7,
        "token_name": "sdk",
        "ttfb_milliseconds": 120,
        "usage": {
            "cache_creation_tokens": 5,
            "cached_tokens": 34,
            "image_input_tokens": 6,
            "input_tokens": 1234,
            "output_tokens": 567,
            "reasoning_tokens": 8,
            "total_tokens": 1801,
            "web_search_count": 1,
        },
        "used_amount": 0.0005253,
        "user": "alice",
    }
    assert first["created_at"].endswith("Z") and len(first["created_at"]) == 24
    # no stored detail: an empty one that still names its log; no retry: ""
    assert second["retry_at"] == ""
    assert second["request_detail"] == {
        "id": 0,
        "log_id": second["id"],
        "request_body": "",
        "request_body_truncated": False,
        "response_body": "",
        "response_body_truncated": False,
    }
    assert all(v == 0 for v in second["price"].values()) and len(second["price"]) == 15

    # the global search: same rows, no token_names facet
    status, body = await get(gw, "/api/logs/search")
    assert set(body["data"]) == {"channels", "logs", "models", "total"}
    assert body["data"]["logs"][0] == first

    # detail: found, global twin, absent, another group's
    status, body = await get(gw, f"/api/log/{APP_ID}/detail/{log_id}")
    assert status == 200 and body == {"data": first, "message": "", "success": True}
    status, body = await get(gw, f"/api/logs/detail/{log_id}")
    assert status == 200 and body["data"] == first
    for path in (f"/api/log/{APP_ID}/detail/999999", "/api/logs/detail/999999", f"/api/log/{OTHER}/detail/{log_id}"):
        status, body = await get(gw, path)
        assert status == 404 and body["data"] is None and body["success"] is False and body["message"]
    for bad in ("abc", "0", str(2**64)):
        status, body = await get(gw, f"/api/log/{APP_ID}/detail/{bad}")
        assert status == 400 and body["message"].startswith("id"), bad


def dataset(now: int) -> list[dict]:
    """Rows over three days, both groups, on and around hour and day boundaries."""
    today = now // DAY * DAY
    hour = now // HOUR * HOUR
    times = [
        now - 60_000,
        now - 61_000,
        hour,
        hour - 1,
        hour - HOUR + 17,
        today,
        today - 1,
        today + 1,
        today - DAY,
        today - DAY + HOUR,
        today - DAY - 3 * HOUR - 59,
        today - 2 * DAY + 5,
        now - 2 * DAY - 7 * HOUR,
        now - 3 * DAY + 11,
        now - 5 * HOUR,
        now - 27 * HOUR,
        now + 2 * HOUR,
    ]
    models = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]
    rows = []
    for i, ts in enumerate(times * 3):
        code = [200, 200, 429, 200, 500, 200, 400][i % 7]
        rows.append(
            log_row(
                ts,
                app_id=APP_ID if i % 4 else OTHER,
                model=models[i % 3],
                channel=1 + i % 3 if i % 5 else 4,
                code=code,
                content="" if code == 200 else f"Upstream TIMEOUT #{i}" if code == 500 else f"error {code}",
                token_name=["", "sdk", "mobile"][i % 3 if i % 2 else 0],
                user=["alice", "bob", "Carol_x"][i % 3],
            )
        )
    return rows


def expected(rows: list[dict], params: dict, group: str | None) -> list[dict]:
    def ok(r: dict) -> bool:
        p = params
        if group is not None and r["app_id"] != group:
            return False
        if "group" in p and r["app_id"] != p["group"]:
            return False
        for param, col in (
            ("model_name", "model"),
            ("token_name", "token_name"),
            ("request_id", "request_id"),
            ("user", "user"),
        ):
            if param in p and r[col] != p[param]:
                return False
        if "channel" in p and r["channel"] != int(p["channel"]):
            return False
        if "code" in p and r["code"] != int(p["code"]):
            return False
        if "start_timestamp" in p and r["created_ms"] < int(p["start_timestamp"]):
            return False
        if "end_timestamp" in p and r["created_ms"] >= int(p["end_timestamp"]):
            return False
        if p.get("code_type") == "success" and r["code"] != 200:
            return False
        if p.get("code_type") == "error" and r["code"] == 200:
            return False
        if "keyword" in p:
            kw = p["keyword"].lower()
            if not any(kw in str(r[c]).lower() for c in ("request_id", "user", "model", "token_name", "content")):
                return False
        return True

    order = {id(r): i for i, r in enumerate(rows)}  # insertion order is id order
    return sorted((r for r in rows if ok(r)), key=lambda r: (r["created_ms"], order[id(r)]), reverse=True)


async def test_filters_totals_and_facets_match_the_rows(gw):
    now = now_ms()
    rows = dataset(now)
    await put_all(gw, rows)
    today = now // DAY * DAY
    hour = now // HOUR * HOUR
    some = rows[5]
    cases: list[dict] = [
        {},
        {"model_name": "claude-3-5-haiku"},
        {"token_name": "sdk"},
        {"code_type": "success"},
        {"code_type": "error"},
        {"code_type": "all"},
        {"start_timestamp": today - DAY, "end_timestamp": today},  # one whole UTC day
        {"start_timestamp": today - DAY},
        {"end_timestamp": today + 1},
        {"start_timestamp": today, "end_timestamp": today + 1},  # start inclusive
        {"start_timestamp": today - 1, "end_timestamp": today},  # end exclusive
        {"start_timestamp": hour - HOUR + 17, "end_timestamp": hour},
        {"start_timestamp": now - 3 * DAY + 1, "end_timestamp": now - 61_000},
        {
            "start_timestamp": now - 2 * DAY - 7 * HOUR + 1,
            "end_timestamp": now + 3 * HOUR,
            "model_name": "gpt-4o-mini",
            "code_type": "error",
        },
        {"start_timestamp": today - DAY, "token_name": "mobile", "code_type": "success"},
        {"request_id": some["request_id"]},
        {"user": "bob"},
        {"user": "bob", "start_timestamp": today - DAY, "code_type": "error"},
        {"channel": "2"},
        {"channel": "4", "model_name": "gemini-2.0-flash"},
        {"code": "429"},
        {"code": "200", "end_timestamp": hour},
        {"keyword": "timeout"},  # content, case-insensitive
        {"keyword": "CAROL"},  # user
        {"keyword": "haiku", "code_type": "error"},  # model
        {"keyword": "mobi"},  # token name
        {"keyword": some["request_id"][-4:]},  # request id
        {"keyword": "50%"},  # LIKE wildcards are literal
        {"group": OTHER},
        {"group": "NOPE"},
    ]
    for params in cases:
        for path, group in (("/api/logs/search", None), (f"/api/log/{APP_ID}/search", APP_ID)):
            query = {k: str(v) for k, v in params.items() if group is None or k != "group"}
            status, body = await get(gw, path, {**query, "per_page": 1000})
            assert status == 200, (path, params, body)
            want = expected(rows, query, group)
            data = body["data"]
            got = [log["request_id"] for log in data["logs"]]
            assert got == [r["request_id"] for r in want], (path, params)
            assert data["total"] == len(want), (path, params)
            assert data["channels"] == sorted({r["channel"] for r in want}), (path, params)
            assert data["models"] == sorted({r["model"] for r in want}), (path, params)
            if group is not None:
                assert data["token_names"] == sorted({r["token_name"] for r in want} - {""}), (path, params)
                assert all(log["group"] == group for log in data["logs"])
    # group isolation the other way round, and an unknown group: empty, not a 404
    status, body = await get(gw, f"/api/log/{OTHER}/search", {"per_page": 1000})
    want = expected(rows, {}, OTHER)
    assert [log["request_id"] for log in body["data"]["logs"]] == [r["request_id"] for r in want]
    assert body["data"]["total"] == len(want) and want
    status, body = await get(gw, "/api/log/NOSUCHAPP/search")
    assert status == 200
    assert body["data"] == {"channels": [], "logs": [], "models": [], "token_names": [], "total": 0}


async def test_pagination_validation_and_auth(gw):
    base = now_ms() - HOUR
    # ties on created_ms are broken by id, newest (highest id) first
    rows = [log_row(base + (i // 3) * 1000) for i in range(45)]
    await put_all(gw, rows)
    seen: list[str] = []
    for page in (1, 2, 3):
        status, body = await get(gw, f"/api/log/{APP_ID}/search", {"page": page, "per_page": 20})
        assert status == 200 and body["data"]["total"] == 45
        seen += [log["request_id"] for log in body["data"]["logs"]]
    assert seen == [r["request_id"] for r in reversed(rows)]
    status, body = await get(gw, "/api/logs/search", {"page": 4, "per_page": 20})
    assert body["data"]["logs"] == [] and body["data"]["total"] == 45
    # default page size 20, and empty values mean "no filter"
    status, body = await get(
        gw, "/api/logs/search", {"page": "", "per_page": "", "model_name": "", "channel": "", "code_type": ""}
    )
    assert status == 200 and len(body["data"]["logs"]) == 20

    # every bad value is a 400 envelope naming the parameter; no admin key is a 401
    bad = [
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "1001"}, "per_page"),
        ({"per_page": "-3"}, "per_page"),
        ({"start_timestamp": "yesterday"}, "start_timestamp"),
        ({"start_timestamp": "-1"}, "start_timestamp"),
        ({"end_timestamp": "1.5"}, "end_timestamp"),
        ({"start_timestamp": "2000", "end_timestamp": "1000"}, "end_timestamp"),
        ({"start_timestamp": "1000", "end_timestamp": "1000"}, "end_timestamp"),
        ({"code_type": "failed"}, "code_type"),
        ({"channel": "one"}, "channel"),
        ({"code": "2xx"}, "code"),
        ({"channel": str(2**40)}, "channel"),
        ({"code": "-1"}, "code"),
        ({"page": str(10**30)}, "page"),
        ({"keyword": "k" * 201}, "keyword"),
    ]
    for path in ("/api/logs/search", f"/api/log/{APP_ID}/search", "/api/logs/export"):
        for params, name in bad:
            status, body = await get(gw, path, params)
            assert status == 400, (path, params)
            assert body["data"] is None and body["success"] is False, (path, params)
            assert body["message"].startswith(name), (path, params, body["message"])
    for path in (
        "/api/logs/search",
        f"/api/log/{APP_ID}/search",
        "/api/logs/detail/1",
        f"/api/log/{APP_ID}/detail/1",
        "/api/logs/export",
    ):
        status, body = await get(gw, path, auth=False)
        assert status == 401 and body["success"] is False and body["data"] is None


async def test_export_streams_every_matching_row_as_csv(gw, monkeypatch):
    monkeypatch.setattr(admin_logs, "EXPORT_CHUNK", 7)  # many chunks, boundaries inside ties
    base = now_ms() - HOUR
    rows = [
        log_row(
            base + (i // 4) * 10,
            content='say "hi",\nbye' if i == 3 else "",
            used_amount=Decimal("0.000000000123") if i == 3 else Decimal("1.5"),
            model="claude-3-5-haiku" if i % 5 == 0 else "gpt-4o-mini",
        )
        for i in range(40)
    ]
    rows.append(log_row(base, app_id=OTHER))
    await put_all(gw, rows)

    status, text = await get(gw, f"/api/log/{APP_ID}/export")
    assert status == 200
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == [
        "id",
        "request_id",
        "created_at",
        "group",
        "channel",
        "mode",
        "model",
        "user",
        "token_name",
        "code",
        "retry_times",
        "ttfb_milliseconds",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "total_tokens",
        "used_amount",
        "content",
    ]
    body = [dict(zip(parsed[0], line, strict=True)) for line in parsed[1:]]
    mine = [r for r in rows if r["app_id"] == APP_ID]
    assert [b["request_id"] for b in body] == [r["request_id"] for r in reversed(mine)]
    tricky = next(b for b in body if b["request_id"] == rows[3]["request_id"])
    assert tricky["content"] == 'say "hi",\nbye' and tricky["used_amount"] == "0.000000000123"
    assert tricky["created_at"] == iso_ms(rows[3]["created_ms"]) and tricky["group"] == APP_ID
    assert body[0]["used_amount"] == "1.5" and body[0]["total_tokens"] == "120"

    async with gw.session.get(
        gw.url + "/api/logs/export", headers=gw.admin_headers(), params={"model_name": "claude-3-5-haiku"}
    ) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        lines = list(csv.reader(io.StringIO(await resp.text())))
    assert len(lines) == 1 + 8 and {line[6] for line in lines[1:]} == {"claude-3-5-haiku"}
    status, text = await get(gw, "/api/logs/export", {"group": OTHER})
    assert len(list(csv.reader(io.StringIO(text)))) == 2
