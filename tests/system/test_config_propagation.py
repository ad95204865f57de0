"""A configuration change made through one instance's Admin API is served by every other
instance within a second: over Redis pub/sub (PostgreSQL + Redis), and by the version
poll alone (two instances on one SQLite file, no Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from tests.gateway import APP_ID, Gateway, base_config, start_gateway

NO_UPSTREAM = "http://127.0.0.1:9"
DEADLINE_S = 1.0


async def admin(gw: Gateway, method: str, path: str, body: dict) -> None:
    async with gw.session.request(method, f"{gw.url}/api{path}", json=body, headers=gw.admin_headers()) as resp:
        assert resp.status in (200, 201), await resp.text()


async def seen_within(check: Callable[[], bool], deadline_s: float = DEADLINE_S) -> float:
    """Poll until ``check()`` holds; fail past the deadline. Returns the delay."""
    start = time.monotonic()
    while not check():
        elapsed = time.monotonic() - start
        assert elapsed < deadline_s, f"change not visible after {elapsed:.2f}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def change_on_a_and_watch_b(a: Gateway, b: Gateway) -> list[float]:
    delays = []

    def snap():  # read afresh each time: a reload replaces the snapshot object
        return b.services.snapshot

    await admin(
        a, "POST", f"/apps/{APP_ID}/strategies", {"name": "fresh", "model": "gpt-4o-mini", "platforms": ["sim-openai"]}
    )
    delays.append(await seen_within(lambda: "fresh" in snap().apps[APP_ID].strategies))

    await admin(a, "PATCH", "/platforms/sim-anthropic", {"priority": 42})
    delays.append(await seen_within(lambda: snap().platforms["sim-anthropic"].priority == 42))

    await admin(a, "PUT", "/models/gpt-4o-mini", {"name": "gpt-4o-mini", "price": {"input_price": "9.5"}})
    delays.append(await seen_within(lambda: snap().price("gpt-4o-mini").input_price == Decimal("9.5")))

    await admin(a, "PATCH", f"/apps/{APP_ID}/strategies/fresh", {"enabled": False})
    delays.append(await seen_within(lambda: not snap().apps[APP_ID].strategies["fresh"].enabled))
    return delays


async def test_two_instances_on_postgres_and_redis(pg_url, redis_url):
    a = await start_gateway(base_config(pg_url, NO_UPSTREAM, redis_url=redis_url))
    b = await start_gateway(base_config(pg_url, NO_UPSTREAM, redis_url=redis_url))
    try:
        delays = await change_on_a_and_watch_b(a, b)
        assert max(delays) < DEADLINE_S
        assert a.services.snapshot.version == b.services.snapshot.version
    finally:
        await b.close()
        await a.close()


async def test_two_instances_on_sqlite_by_version_poll(tmp_path):
    url = f"sqlite:///{tmp_path}/aigate.db"
    a = await start_gateway(base_config(url, NO_UPSTREAM))
    b = await start_gateway(base_config(url, NO_UPSTREAM))
    try:
        assert b.services.redis is None
        await change_on_a_and_watch_b(a, b)
        assert a.services.snapshot.version == b.services.snapshot.version
    finally:
        await b.close()
        await a.close()
