"""GET .../ai/ai_request/history/query and POST .../ai/ai_request/history/delete (seed 000)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from aigate.store import tables as t
from tests.api.test_ai_requests import (
    OTHER_SERVER_KEY,
    RECORD_FIELDS,
    ai_config,
    headers,
    prefix,
    submit,
)
from tests.gateway import start_gateway


@pytest.fixture
async def gw(db_url, simulator):
    # every body is kept, so deleting can be seen to drop them
    gateway = await start_gateway(ai_config(db_url, simulator.url, store_bodies="all"))
    try:
        yield gateway
    finally:
        await gateway.close()


async def query(gw, user: str, qs: str, via: str = "server", hdrs: dict | None = None):
    async with gw.session.get(
        gw.url + prefix(user, via) + "/ai_request/history/query?" + qs, headers=hdrs or headers(gw, user, via)
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def delete(gw, user: str, body, via: str = "server", raw: bytes | None = None):
    kwargs = {"data": raw} if raw is not None else {"json": body}
    async with gw.session.post(
        gw.url + prefix(user, via) + "/ai_request/history/delete", headers=headers(gw, user, via), **kwargs
    ) as resp:
        return resp.status, await resp.read()


async def embed(gw, user: str, text: str = "x", via: str = "server") -> str:
    status, rec = await submit(gw, user, "embed", {"text": text}, via)
    assert status == 200, rec
    return rec["request_id"]


async def created_ms(gw, request_id: str) -> int:
    async with gw.services.engine.connect() as conn:
        return (
            await conn.execute(select(t.ai_requests.c.created_ms).where(t.ai_requests.c.request_id == int(request_id)))
        ).scalar_one()


async def test_pages_newest_first_with_has_more(gw):
    ids = [await embed(gw, "u1", f"text {i}", via="server" if i % 2 else "client") for i in range(5)]
    await embed(gw, "u2")  # another user's record never shows
    for via in ("server", "client"):
        status, page1 = await query(gw, "u1", "page=1&page_size=2", via)
        assert status == 200 and set(page1) == {"data", "has_more"}
        assert [r["request_id"] for r in page1["data"]] == ids[::-1][:2] and page1["has_more"] is True
        assert all(set(r) == RECORD_FIELDS for r in page1["data"])
        _, page3 = await query(gw, "u1", "page=3&page_size=2", via)
        assert [r["request_id"] for r in page3["data"]] == ids[:1] and page3["has_more"] is False
        _, whole = await query(gw, "u1", "page=1&page_size=5", via)
        assert len(whole["data"]) == 5 and whole["has_more"] is False
        _, beyond = await query(gw, "u1", "page=4&page_size=2", via)
        assert beyond == {"data": [], "has_more": False}
    # the same user id in another app has no history here, and no token is no answer
    status, body = await query(gw, "u1", "page=1&page_size=10", hdrs={"Authorization": f"Bearer {OTHER_SERVER_KEY}"})
    assert status == 200 and body == {"data": [], "has_more": False}
    async with gw.session.get(gw.url + "/bp/ai/ai_request/history/query?page=1&page_size=10") as resp:
        assert resp.status == 401


async def test_filters(gw):
    a = await embed(gw, "u1", "a", via="server")
    b = await embed(gw, "u1", "b", via="client")
    status, _ = await submit(gw, "u1", "nope")
    assert status == 404
    c = await embed(gw, "u1", "c", via="server")

    async def ids(qs: str) -> list[str]:
        status, body = await query(gw, "u1", "page=1&page_size=100&" + qs)
        assert status == 200, body
        return [r["request_id"] for r in body["data"]]

    failed = await ids("status=failed")
    assert len(failed) == 1 and failed[0] not in (a, b, c)
    assert await ids("status=succeeded") == [c, b, a]
    assert len(await ids("status=succeeded,failed")) == 4
    assert await ids("status=pending,queueing,processing") == []
    assert await ids("from_appserver=false") == [b]
    assert set(await ids("from_appserver=true")) == {a, c, *failed}
    # exclusive bounds on the created time
    ta, tc = await created_ms(gw, a), await created_ms(gw, c)
    assert a not in await ids(f"start_time={ta}") and c in await ids(f"start_time={ta}")
    assert c not in await ids(f"end_time={tc}") and a in await ids(f"end_time={tc}")
    assert await ids(f"start_time={ta - 1}&end_time={tc + 1}&status=succeeded") == [c, b, a]
    assert await ids(f"start_time={tc}&end_time={ta}") == []  # start >= end: empty, not an error
    assert await ids(f"start_time={ta}&end_time={ta}") == []


BAD_QUERIES = [
    ("page_size=10", "page"),
    ("page=1", "page_size"),
    ("page=0&page_size=10", "page"),
    ("page=101&page_size=10", "page"),
    ("page=abc&page_size=10", "page"),
    ("page=1.5&page_size=10", "page"),
    ("page=1&page_size=0", "page_size"),
    ("page=1&page_size=1001", "page_size"),
    ("page=1&page_size=10&start_time=yesterday", "start_time"),
    ("page=1&page_size=10&end_time=1.5", "end_time"),
    ("page=1&page_size=10&status=done", "status"),
    ("page=1&page_size=10&status=succeeded,%20failed", "status"),
    ("page=1&page_size=10&status=succeeded,", "status"),
    ("page=1&page_size=10&status=SUCCEEDED", "status"),
    ("page=1&page_size=10&from_appserver=maybe", "from_appserver"),
    ("page=1&page_size=10&from_appserver=1", "from_appserver"),
]


async def test_bad_query_values_are_400_naming_the_parameter(gw):
    for via in ("server", "client"):
        for qs, param in BAD_QUERIES:
            status, body = await query(gw, "u1", qs, via)
            assert status == 400, (qs, body)
            assert body["error"]["error_type"] == "invalid_parameter"
            assert body["error"]["message"].startswith(param + ":"), (qs, body)
        for qs in ("page=100&page_size=1000", "page=1&page_size=1&from_appserver=false&status=queueing"):
            assert (await query(gw, "u1", qs, via))[0] == 200


async def test_delete_removes_records_and_log_bodies(gw):
    mine = [await embed(gw, "alice", f"secret {i}") for i in range(3)]
    theirs = await embed(gw, "bob", "bob's secret")
    body = {"request_ids": [mine[0], mine[1], mine[0], theirs, "123", "not-an-id"]}
    for via in ("client", "server", "client"):  # idempotent, under either prefix
        status, content = await delete(gw, "alice", body, via)
        assert status == 200 and content == b""

    _, left = await query(gw, "alice", "page=1&page_size=10")
    assert [r["request_id"] for r in left["data"]] == [mine[2]]
    _, bobs = await query(gw, "bob", "page=1&page_size=10")
    assert [r["request_id"] for r in bobs["data"]] == [theirs]

    await gw.flush()
    async with gw.services.engine.connect() as conn:
        logs = {r.request_id: r for r in (await conn.execute(select(t.usage_logs))).all()}
        details = {r.log_id for r in (await conn.execute(select(t.request_details))).all()}
        platform_ids = {r.request_id: r.platform_id for r in (await conn.execute(select(t.ai_requests))).all()}
    assert len(logs) == 4  # billing rows stay
    kept = [log for log in logs.values() if log.id in details]
    assert len(kept) == 2  # only the bodies of the remaining records are left
    assert {log.request_id for log in kept} == set(platform_ids.values())
    gone = [log for log in logs.values() if log.id not in details]
    assert all(log.content == "" and log.input_tokens > 0 and log.model == "text-embedding-3-small" for log in gone)


async def test_delete_keeps_error_rows_billing_but_drops_their_text(gw):
    status, _ = await submit(gw, "alice", "dell-3", {"n": 1})  # missing variable: a failed record
    assert status == 400
    _, hist = await query(gw, "alice", "page=1&page_size=10")
    [rec] = hist["data"]
    assert (await delete(gw, "alice", {"request_ids": [rec["request_id"]]}))[0] == 200
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        [log] = (await conn.execute(select(t.usage_logs))).all()
        assert (await conn.execute(select(t.request_details))).all() == []
    assert log.code == 400 and log.content == "" and log.request_id == rec["platform_id"]


BAD_DELETES = [  # (body, the field the message names)
    (b'{"request_ids": []}', "request_ids"),
    (b"{}", "request_ids"),
    (b'{"request_ids": "123"}', "request_ids"),
    (b'{"request_ids": [123]}', "request_ids"),
    (b'{"request_ids": [' + b",".join(b'"%d"' % i for i in range(1001)) + b"]}", "request_ids"),
    (b"request_ids=1", "body"),
    (b"[]", "body"),
    (b"", "body"),
]


async def test_bad_delete_bodies_are_400(gw):
    for raw, field in BAD_DELETES:
        status, content = await delete(gw, "alice", None, raw=raw)
        assert status == 400, raw[:40]
        error = orjson.loads(content)["error"]
        assert error["error_type"] == "invalid_parameter" and error["message"].startswith(field + ":")


async def test_delete_of_a_thousand_ids_is_accepted(gw):
    rid = await embed(gw, "alice")
    ids = [str(i) for i in range(999)] + [rid]
    assert (await delete(gw, "alice", {"request_ids": ids}))[0] == 200
    _, left = await query(gw, "alice", "page=1&page_size=10")
    assert left["data"] == []
