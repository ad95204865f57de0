"""Edge limits (SPEC §10), checked before any metering: per-user and per-IP request
rates shared by two instances through Redis, the open-stream cap, the failed-
authentication cap per IP (which never refuses a valid token) and trusted proxies."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
from sqlalchemy import func, select

from aigate.store import tables as t
from tests.gateway import base_config, start_gateway

CHAT = {
    "strategy": "free-normal",
    "parameters": {"example_string": "x"},
    "messages": [{"role": "user", "content": "hi"}],
}


def limited(db_url, sim_url, redis_url="", **limits):
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["apps"][0]["rate_limits"] = limits
    doc["apps"][0]["assets"][0]["initial_quantity"] = 1000
    return doc


async def test_per_user_rpm_holds_across_two_instances(pg_url, redis_url, simulator):
    a = await start_gateway(limited(pg_url, simulator.url, redis_url, per_user_rpm=30))
    b = await start_gateway(limited(pg_url, simulator.url, redis_url, per_user_rpm=30))
    try:
        headers = a.user_headers("hammer")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(i: int):
                url = (a.url, b.url)[i % 2] + "/bp/ai/chat"
                async with session.post(url, json=CHAT, headers=headers) as resp:
                    body = await resp.json()
                    return (
                        resp.status,
                        (body.get("error") or {}).get("error_type", "ok"),
                        resp.headers.get("Retry-After"),
                    )

            results = await asyncio.gather(*(one(i) for i in range(100)))
        outcome = Counter((s, e) for s, e, _ in results)
        assert outcome == {(200, "ok"): 30, (429, "limit_exceeded"): 70}
        assert all(r is not None and 1 <= int(r) <= 60 for s, _, r in results if s == 429)
        # refused before metering: 30 calls were logged and charged, no more
        await a.flush()
        await b.flush()
        async with a.services.engine.connect() as conn:
            logged = (await conn.execute(select(func.count()).select_from(t.usage_logs))).scalar_one()
            micros = (await conn.execute(select(t.user_assets.c.quantity_micros))).scalar_one()
        assert logged == 30 and micros == (1000 - 30) * 1_000_000
        # another user of the same app has a budget of their own
        async with a.session.post(f"{b.url}/bp/ai/chat", json=CHAT, headers=a.user_headers("other")) as resp:
            assert resp.status == 200
    finally:
        await b.close()
        await a.close()


async def test_per_ip_rpm_in_process(tmp_path, simulator):
    gw = await start_gateway(limited(f"sqlite:///{tmp_path}/e.db", simulator.url, per_ip_rpm=5))
    try:
        statuses = []
        for i in range(7):  # seven users, one address
            async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=gw.user_headers(f"u{i}")) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    body = await resp.json()
                    assert "per_ip_rpm" in body["error"]["message"] and int(resp.headers["Retry-After"]) >= 1
        assert statuses == [200] * 5 + [429] * 2
        # the app server is not limited by the client edge
        async with gw.session.get(f"{gw.url}/bp/server/user/u9/ai/assets", headers=gw.server_headers()) as resp:
            assert resp.status == 200
    finally:
        await gw.close()


async def _stream(gw, user: str, url: str | None = None) -> tuple[int, str]:
    body = {**CHAT, "messages": [{"role": "user", "content": "[[sim chunks=6 chunk_interval_ms=150]] hi"}]}
    async with gw.session.post(f"{url or gw.url}/bp/ai/chat/stream", json=body, headers=gw.user_headers(user)) as resp:
        return resp.status, await resp.text()


async def test_open_streams_per_user_are_capped_in_process(tmp_path, simulator):
    await _stream_cap(tmp_path, simulator, "")


async def test_open_streams_per_user_are_capped_through_redis(tmp_path, simulator, redis_url):
    await _stream_cap(tmp_path, simulator, redis_url)


async def _stream_cap(tmp_path, simulator, redis_url):
    doc = limited(f"sqlite:///{tmp_path}/s.db", simulator.url, redis_url, max_concurrent_streams_per_user=2)
    gw = await start_gateway(doc)
    try:
        results = await asyncio.gather(*(_stream(gw, "alice") for _ in range(3)), _stream(gw, "bob"))
        statuses = sorted(s for s, _ in results[:3])
        assert statuses == [200, 200, 429] and results[3][0] == 200
        assert all('"is_finish":true' in text for s, text in results if s == 200)
        # the slots came back when the streams ended
        results = await asyncio.gather(*(_stream(gw, "alice") for _ in range(2)))
        assert [s for s, _ in results] == [200, 200]
        # a client that goes away mid-stream gives its slot back too
        body = {**CHAT, "messages": [{"role": "user", "content": "[[sim chunks=20 chunk_interval_ms=200]] hi"}]}
        for _ in range(2):
            async with gw.session.post(
                f"{gw.url}/bp/ai/chat/stream", json=body, headers=gw.user_headers("alice")
            ) as resp:
                assert resp.status == 200
                await resp.content.readline()  # then drop the connection
        for _ in range(50):
            status, _ = await _stream(gw, "alice")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
    finally:
        await gw.close()


async def test_stream_slots_expire_when_an_instance_dies(redis_url):
    import redis.asyncio as aioredis

    from aigate.edge import streams

    client = aioredis.from_url(redis_url)
    dead = streams.StreamSlots(client)
    alive = streams.StreamSlots(client)
    try:
        assert await dead.acquire("APP:u", 1) is not None
        dead._held.clear()  # the instance is gone: nobody renews its lease
        assert await alive.acquire("APP:u", 1) is None
        await client.zadd(
            "aigate:edge:streams:APP:u",
            {m: 0 for m in await client.zrange("aigate:edge:streams:APP:u", 0, -1)},
            xx=True,
        )  # its lease runs out
        assert await alive.acquire("APP:u", 1) is not None
    finally:
        await alive.stop()
        await dead.stop()
        await client.aclose()


async def test_failed_authentications_from_one_ip_are_cut_off(tmp_path, simulator):
    doc = base_config(f"sqlite:///{tmp_path}/f.db", simulator.url)
    doc["server"]["unauthenticated_ip_rpm"] = 20
    gw = await start_gateway(doc)
    try:
        bad = {"Authorization": "Bearer not-a-token"}
        statuses = []
        for _ in range(25):
            async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=bad) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    retry_after = int(resp.headers["Retry-After"])
                    assert 1 <= retry_after <= 60
                    assert "unauthenticated_ip_rpm" in (await resp.json())["error"]["message"]
        assert statuses == [401] * 20 + [429] * 5
        # wrong server keys count too
        async with gw.session.get(
            f"{gw.url}/bp/server/user/u/ai/assets", headers={"Authorization": "Bearer wrong-server-key"}
        ) as resp:
            assert resp.status == 429
        # a valid token from the same address is never refused by the cap
        async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=gw.user_headers("alice")) as resp:
            assert resp.status == 200
        async with gw.session.get(f"{gw.url}/bp/server/user/u/ai/assets", headers=gw.server_headers()) as resp:
            assert resp.status == 200
    finally:
        await gw.close()


async def test_trusted_proxies_name_the_client_ip(tmp_path, simulator):
    doc = base_config(f"sqlite:///{tmp_path}/p.db", simulator.url)
    doc["server"]["unauthenticated_ip_rpm"] = 3
    doc["server"]["trusted_proxies"] = ["127.0.0.0/8"]
    gw = await start_gateway(doc)
    try:

        async def bad(forwarded: str) -> int:
            headers = {"Authorization": "Bearer nope", "X-Forwarded-For": forwarded}
            async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=headers) as resp:
                return resp.status

        # the client's own entries (left of the proxy's) are not believed
        assert [await bad(f"10.0.0.{i}, 203.0.113.7") for i in range(5)] == [401, 401, 401, 429, 429]
        assert await bad("198.51.100.2") == 401  # another client behind the same proxy
    finally:
        await gw.close()
