"""Values no table can hold are a 400 naming the field, on every surface and database;
NUL in a chat message is user text and is kept. Regression tests for issue 10, Why 5
(and the store half of Why 1)."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from aigate.store import tables as t

BIG = "99999999999999999999999"


async def get(gw, path: str, headers: dict) -> tuple[int, bytes]:
    async with gw.session.get(f"{gw.url}{path}", headers=headers) as resp:
        return resp.status, await resp.read()


async def send(gw, method: str, path: str, raw: bytes, headers: dict) -> tuple[int, bytes]:
    headers = {**headers, "Content-Type": "application/json"}
    async with gw.session.request(method, f"{gw.url}{path}", data=raw, headers=headers) as resp:
        return resp.status, await resp.read()


def admin_error(status: int, body: bytes, *fragments: str) -> None:
    assert status == 400, body
    doc = orjson.loads(body)  # a JSON envelope, never a plain-text 500
    assert doc["success"] is False and doc["data"] is None
    for fragment in fragments:
        assert fragment in doc["message"], doc["message"]


def app_error(status: int, body: bytes, *fragments: str) -> None:
    assert status == 400, body
    error = orjson.loads(body)["error"]
    assert error["error_type"] == "invalid_parameter"
    for fragment in fragments:
        assert fragment in error["message"], error["message"]


async def test_app_api_integers_beyond_int64_are_a_400(gw):
    for param in ("end_time", "start_time"):
        for value in (BIG, "-" + BIG):
            status, body = await get(
                gw, f"/bp/ai/ai_request/history/query?page=1&page_size=10&{param}={value}", gw.user_headers("u1")
            )
            app_error(status, body, param)
    raw = b'{"asset": "ai_credit", "quantity": 9223372036854775808, "idempotency_key": "k1"}'
    app_error(
        *await send(gw, "POST", "/bp/server/user/u1/ai/assets/grant", raw, gw.server_headers()), "quantity", "64 bits"
    )


NUL_PATHS = [
    "/api/logs/search?user=a%00b",
    "/api/logs/search?keyword=a%00b",
    "/api/logs/search?model_name=%00",
    "/api/logs/search?group=a%00",
    "/api/log/APPTEST/search?keyword=a%00b",
    "/api/log/APPTEST/search?token_name=%00",
    "/api/log/A%00B/search",
    "/api/logs/export?request_id=%00",
    "/api/log/APPTEST/export?user=%00",
    "/api/dashboard?group=%00",
    "/api/apps/APPTEST/users/a%00b",
    "/api/apps/A%00/strategies",
]


async def test_nul_in_admin_parameters_is_a_400_naming_it(gw):
    for path in NUL_PATHS:
        status, body = await get(gw, path, gw.admin_headers())
        name = (
            path.split("?")[1].split("=")[0]
            if "?" in path
            else ("user_id" if "users" in path else "app_id" if "apps" in path else "group")
        )
        admin_error(status, body, name, "NUL")


PLATFORM = {
    "id": "big",
    "type": "openai_compatible",
    "base_url": "https://llm.example.com/v1",
    "api_key": "sk-0123456789abcdef",
    "models": ["gpt-4o-mini"],
}


OUT_OF_BOUNDS = [
    (b'"options": {"x": 10000000000000000000000000}', "options.x"),
    (b'"options": {"x": -9223372036854775809}', "options.x"),
    (b'"options": {"x": [1, NaN]}', "NaN"),
    (b'"options": {"x": 1e400}', "options.x"),
    (b'"options": {"x": "a\\u0000b"}', "options.x"),
    (b'"options": {"a\\u0000": 1}', "options.a"),
    (b'"options": {"x": "\\ud800"}', "options.x"),
]


async def test_admin_write_out_of_bounds_is_refused_before_any_commit(gw):
    for raw, field in OUT_OF_BOUNDS:
        body = orjson.dumps(PLATFORM)[:-1] + b", " + raw + b"}"
        admin_error(*await send(gw, "POST", "/api/platforms", body, gw.admin_headers()), field)
        status, listed = await get(gw, "/api/platforms", gw.admin_headers())  # nothing broke the table
        assert status == 200 and "big" not in [p["id"] for p in orjson.loads(listed)["data"]]
        admin_error(*await send(gw, "PATCH", "/api/platforms/sim-openai", b"{" + raw + b"}", gw.admin_headers()), field)
        status, one = await get(gw, "/api/platforms/sim-openai", gw.admin_headers())
        assert status == 200 and orjson.loads(one)["data"]["options"] == {}


async def test_admin_write_in_bounds_still_works(gw):
    body = dict(PLATFORM, options={"x": 2**63 - 1, "y": -(2**63), "f": 1.5, "s": "日本"})
    status, raw = await send(gw, "POST", "/api/platforms", orjson.dumps(body), gw.admin_headers())
    assert status == 201, raw
    status, listed = await get(gw, "/api/platforms", gw.admin_headers())
    assert status == 200
    [big] = [p for p in orjson.loads(listed)["data"] if p["id"] == "big"]
    assert big["options"] == body["options"]


async def test_nul_in_a_chat_message_is_kept(gw):
    """User text: stored as sent on both databases (PostgreSQL's text refuses NUL)."""
    text = "a\x00b"
    raw = orjson.dumps(
        {
            "strategy": "free-normal",
            "parameters": {"example_string": "x"},
            "messages": [{"role": "user", "content": text}],
        }
    )
    status, body = await send(gw, "POST", "/bp/ai/chat", raw, gw.user_headers("u1"))
    assert status == 200, body
    chat_id = orjson.loads(body)["chat_id"]
    status, body = await get(gw, f"/bp/ai/chat/history?chat_id={chat_id}", gw.user_headers("u1"))
    assert status == 200
    [exchange] = orjson.loads(body)["chat_histories"]
    assert exchange["messages"][0]["content"] == text
    status, body = await get(gw, "/bp/ai/chats", gw.user_headers("u1"))
    assert status == 200 and orjson.loads(body)["chats"][0]["title"] == text
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        assert (await conn.execute(select(t.chats.c.title))).scalar_one() == text
