"""Admin API user view and erase: what an operator sees of one end user, and an erase
that removes exactly that user's content in exactly that app."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from aigate.store import tables as t
from tests.gateway import APP_ID, base_config, start_gateway

NO_UPSTREAM = "http://127.0.0.1:9"
OTHER_APP = "APPOTHER"
T0 = 1_750_000_000_000
LIVE_LEASE = 4_102_444_800_000  # 2100-01-01
# (app, user) pairs seeded with the same shape of data; only the first is erased
ERASED = (APP_ID, "u1")
SAME_APP = (APP_ID, "u2")
OTHER = (OTHER_APP, "u1")  # same user id in another app
USER_TABLES = (
    t.users,
    t.user_assets,
    t.asset_ledger,
    t.usage_counters,
    t.chats,
    t.chat_exchanges,
    t.ai_requests,
    t.asset_holds,
)
M = 1_000_000  # stored quantities are millionths


@pytest.fixture
async def api(db_url):
    doc = base_config(db_url, NO_UPSTREAM)
    doc["apps"].append(
        {
            "id": OTHER_APP,
            "user_token_secret": "other-secret-" + "x" * 32,
            "assets": [{"name": "ai_credit", "initial_quantity": 5}],
        }
    )
    gateway = await start_gateway(doc)
    try:
        await seed(gateway)
        yield gateway
    finally:
        await gateway.close()


async def seed(gw) -> None:
    """Each (app, user): 2 chats with 3 exchanges, 3 AI requests, a balance, 4 ledger
    entries, a counter, and 3 usage log rows (one with stored bodies)."""
    rows: dict = {table: [] for table in USER_TABLES}
    for n, (app, user) in enumerate((ERASED, SAME_APP, OTHER)):
        mine = {"app_id": app, "user_id": user}
        rows[t.users].append({**mine, "created_ms": T0 + n})
        rows[t.user_assets].append(
            {**mine, "name": "ai_credit", "quantity_micros": (40 + n) * M, "last_recovery_ms": T0, "updated_ms": T0}
        )
        rows[t.usage_counters].append(
            {**mine, "strategy": "free-normal", "period": "day:20260101", "count": 3, "total": 3}
        )
        for i in range(4):
            rows[t.asset_ledger].append(
                {
                    **mine,
                    "asset": "ai_credit",
                    "delta_micros": -M,
                    "balance_micros": (49 - i) * M,
                    "reason": "reserve",
                    "request_id": f"{n}{i}",
                    "created_ms": T0 + i,
                }
            )
        rows[t.asset_holds].append(
            {
                **mine,
                "request_id": f"h{n}",
                "asset": "ai_credit",
                "amount_micros": 2_500_000,
                "holder": "i1",
                "lease_until_ms": LIVE_LEASE,  # the gateway's sweep of lapsed holds leaves it
                "created_ms": T0,
            }
        )
        for c in range(2):
            chat_id = f"CHAT{n}{c}".ljust(18, "X")
            rows[t.chats].append(
                {
                    **mine,
                    "chat_id": chat_id,
                    "strategy": "free-normal",
                    "title": f"hi {user}",
                    "created_ms": T0 + c,
                    "updated_ms": T0 + c,
                }
            )
            for e in range(3 if c == 0 else 0):
                rows[t.chat_exchanges].append(
                    {
                        **mine,
                        "chat_id": chat_id,
                        "strategy": "free-normal",
                        "tokens": 5,
                        "request_id": None,
                        "messages": [{"role": "user", "content": f"secret of {user}"}],
                        "created_ms": T0 + e,
                        "updated_ms": T0 + e,
                    }
                )
        for r in range(3):
            rows[t.ai_requests].append(
                {
                    **mine,
                    "request_id": 1000 * (n + 1) + r,
                    "from_appserver": r == 0,
                    "module": "chat",
                    "strategy": "free-normal",
                    "platform": "openai",
                    "platform_id": f"p{n}{r}",
                    "status": "succeeded",
                    "response": f'{{"reply": "for {user}"}}',
                    "error": "",
                    "created_ms": T0 + r,
                    "updated_ms": T0 + r,
                }
            )
    async with gw.services.engine.begin() as conn:
        for table, values in rows.items():
            await conn.execute(insert(table), values)
    for n, (app, user) in enumerate((ERASED, SAME_APP, OTHER)):
        for r in range(3):
            await gw.services.writer.put(
                "usage_log",
                {
                    "request_id": f"{n}{r}",
                    "created_ms": T0 + r,
                    "request_ms": T0 + r,
                    "code": 200 if r else 500,
                    "content": f"error quoting {user}" if r == 0 else "",
                    "endpoint": "/bp/ai/chat",
                    "app_id": app,
                    "channel": 1,
                    "model": "gpt-4o-mini",
                    "ip": "10.0.0.1",
                    "user": user,
                    "metadata": {"strategy": "free-normal"},
                    "input_tokens": 10,
                    "output_tokens": 20,
                    "total_tokens": 30,
                    "price": {},
                    "used_amount": "0.25",
                    "request_body": f"body of {user}" if r == 1 else "",
                    "response_body": "",
                },
                wait=True,
            )


async def call(gw, method: str, path: str, *, headers=None, params=None):
    headers = gw.admin_headers() if headers is None else headers
    async with gw.session.request(method, f"{gw.url}/api{path}", headers=headers, params=params) as resp:
        return resp.status, await resp.json(content_type=None)


async def snapshot_of(gw, app: str, user: str) -> dict:
    """Every row that belongs to (app, user), plus their usage log rows and bodies."""
    out = {}
    async with gw.services.engine.connect() as conn:
        for table in USER_TABLES:
            result = await conn.execute(select(table).where((table.c.app_id == app) & (table.c.user_id == user)))
            out[table.name] = sorted(map(tuple, result.all()), key=str)
        logs = (
            await conn.execute(
                select(t.usage_logs).where((t.usage_logs.c.app_id == app) & (t.usage_logs.c.user == user))
            )
        ).all()
        out["usage_logs"] = sorted(map(tuple, logs), key=str)
        details = await conn.execute(
            select(t.request_details).where(t.request_details.c.log_id.in_([r.id for r in logs]))
        )
        out["request_details"] = sorted(map(tuple, details.all()), key=str)
    return out


async def test_user_view(api):
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/u1")
    assert status == 200 and doc["success"] is True, doc
    view = doc["data"]
    assert view["app_id"] == APP_ID and view["user_id"] == "u1" and view["created_at"].endswith("Z")
    (asset,) = view["assets"]
    assert asset == {
        "name": "ai_credit",
        "quantity": 40,
        "type": "consumable",
        "recoverable": True,
        "recovery_period": 1,
        "recovery_quantity": 50,
        "last_recovery_time": "2025-06-15T15:06:40.000Z",
        "valid_seconds": 0,
        "has_policy": True,
        "precision": 0,
        "held": 2.5,
    }
    assert view["holds"] == [
        {
            "request_id": "h0",
            "asset": "ai_credit",
            "amount": 2.5,
            "holder": "i1",
            "created_at": "2025-06-15T15:06:40.000Z",
            "lease_until": "2100-01-01T00:00:00.000Z",
        }
    ]
    assert [e["balance_after"] for e in view["ledger"]] == [46, 47, 48, 49]  # newest first
    assert view["chats"]["count"] == 2 and view["chats"]["latest"][0]["title"] == "hi u1"
    assert view["ai_requests"]["count"] == 3
    assert [r["request_id"] for r in view["ai_requests"]["latest"]] == ["1002", "1001", "1000"]
    assert view["usage"] == {
        "requests": 3,
        "errors": 1,
        "input_tokens": 30,
        "output_tokens": 60,
        "total_tokens": 90,
        "used_amount": "0.75",
    }
    # scoped: the same user id in another app has its own numbers
    status, doc = await call(api, "GET", f"/apps/{OTHER_APP}/users/u1")
    assert (
        doc["data"]["assets"][0]["quantity"] == 42 and doc["data"]["ai_requests"]["latest"][0]["request_id"] == "3002"
    )


async def test_user_list_and_ledger_pages(api):
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users", params={"per_page": 1})
    assert status == 200 and doc["data"]["total"] == 2
    assert [u["user_id"] for u in doc["data"]["users"]] == ["u2"]  # newest first
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users", params={"page": 2, "per_page": 1})
    assert [u["user_id"] for u in doc["data"]["users"]] == ["u1"]

    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/u1/ledger", params={"page": 2, "per_page": 3})
    assert status == 200 and doc["data"]["total"] == 4
    assert [e["balance_after"] for e in doc["data"]["ledger"]] == [49]

    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users", params={"per_page": 0})
    assert status == 400 and "per_page" in doc["message"]
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/bad$id")
    assert status == 400 and "user_id" in doc["message"]
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/ghost")
    assert status == 404 and doc["success"] is False and "ghost" in doc["message"]
    status, doc = await call(api, "GET", "/apps/NOPE/users/u1")
    assert status == 404 and "NOPE" in doc["message"]
    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/u1", headers={})
    assert status == 401


async def test_erase_removes_content_and_keeps_billing(api):
    same_app_before = await snapshot_of(api, *SAME_APP)
    other_app_before = await snapshot_of(api, *OTHER)
    async with api.services.engine.connect() as conn:
        billed_before = (
            await conn.execute(
                select(func.count(), func.sum(t.usage_logs.c.total_tokens), func.sum(t.usage_logs.c.used_amount))
            )
        ).one()

    status, doc = await call(api, "DELETE", f"/apps/{APP_ID}/users/u1")
    assert status == 200 and doc["success"] is True, doc
    assert doc["data"] == {
        "chat_exchanges": 3,
        "chats": 2,
        "ai_requests": 3,
        "user_assets": 1,
        "asset_holds": 1,
        "usage_counters": 1,
        "users": 1,
        "request_details": 1,
        "usage_logs_anonymised": 3,
        "ledger_anonymised": 4,
        "usage_totals_anonymised": 1,
    }

    gone = await snapshot_of(api, *ERASED)
    assert all(rows == [] for rows in gone.values()), gone
    # billing rows stay, under one marker, without content, IP or bodies
    async with api.services.engine.connect() as conn:
        logs = (
            await conn.execute(
                select(t.usage_logs).where((t.usage_logs.c.app_id == APP_ID) & t.usage_logs.c.user.like("erased:%"))
            )
        ).all()
        ledger = (await conn.execute(select(t.asset_ledger).where(t.asset_ledger.c.user_id.like("erased:%")))).all()
        billed_after = (
            await conn.execute(
                select(func.count(), func.sum(t.usage_logs.c.total_tokens), func.sum(t.usage_logs.c.used_amount))
            )
        ).one()
        details = (
            await conn.execute(
                select(t.request_details.c.log_id).where(t.request_details.c.log_id.in_([r.id for r in logs]))
            )
        ).all()
    assert len(logs) == 3 and len({r.user for r in logs}) == 1
    marker = logs[0].user
    assert len(marker) == len("erased:") + 16 and "u1" not in marker
    assert all(r.content == "" and r.ip == "" and r.total_tokens == 30 for r in logs)
    assert sum(Decimal(str(r.used_amount)) for r in logs) == Decimal("0.75")
    assert details == []
    assert len(ledger) == 4 and {r.user_id for r in ledger} == {marker} and {r.app_id for r in ledger} == {APP_ID}
    assert billed_after == billed_before  # totals still add up

    # another user of the same app, and the same user id in another app: untouched
    assert await snapshot_of(api, *SAME_APP) == same_app_before
    assert await snapshot_of(api, *OTHER) == other_app_before

    status, doc = await call(api, "GET", f"/apps/{APP_ID}/users/u1")
    assert status == 404
    status, doc = await call(api, "DELETE", f"/apps/{APP_ID}/users/u1")  # idempotent
    assert status == 200 and set(doc["data"].values()) == {0}
    status, doc = await call(api, "DELETE", "/apps/NOPE/users/u1")
    assert status == 404
