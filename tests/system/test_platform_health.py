"""Several keys per platform, cooldowns shared through Redis, health probes (SPEC §14),
against the provider simulator; every call is served and billed exactly once."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from aigate.engine import health
from aigate.store import tables as t
from tests.gateway import APP_ID, base_config, start_gateway
from tests.system.test_webhooks import SECRET, Receiver, until

PROBE = health.PROBE_TEXT


def two_platforms(sim_url: str, **health_cfg) -> dict:
    """Platform A (priority 10, key sk-aaaa…) before B (priority 0, key sk-bbbb…), both
    serving gpt-4o-mini, behind the `free-normal` strategy."""
    timeout = {"connect_s": 2, "first_byte_s": 5, "total_s": 10}
    return {
        "platforms": [
            {
                "id": "plat-a",
                "type": "openai",
                "base_url": f"{sim_url}/v1",
                "api_key": "sk-aaaaaaaaaaaa",
                "models": ["gpt-4o-mini"],
                "priority": 10,
                "timeout": timeout,
            },
            {
                "id": "plat-b",
                "type": "openai",
                "base_url": f"{sim_url}/v1",
                "api_key": "sk-bbbbbbbbbbbb",
                "models": ["gpt-4o-mini"],
                "priority": 0,
                "timeout": timeout,
            },
        ],
        "health": health_cfg,
    }


def config(db_url: str, sim_url: str, *, redis_url: str = "", platforms: dict | None = None) -> dict:
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    if platforms is not None:
        doc["platforms"] = platforms["platforms"]
        doc["health"] = platforms["health"]
        doc["apps"][0]["strategies"][0]["platforms"] = [p["id"] for p in platforms["platforms"]]
    return doc


async def chat(gw, user: str = "u1", text: str = "hello") -> tuple[int, dict]:
    body = {
        "strategy": "free-normal",
        "parameters": {"example_string": "a tester"},
        "messages": [{"role": "user", "content": text}],
    }
    async with gw.session.post(gw.url + "/bp/ai/chat", json=body, headers=gw.user_headers(user)) as resp:
        return resp.status, await resp.json(content_type=None)


def keys_seen(simulator, since: int = 0) -> list[str]:
    """The API key of each chat the simulator received (probes excluded), oldest first."""
    out = []
    for r in simulator.requests[since:]:
        if r["path"].endswith("/chat/completions") and PROBE not in str(r["body"]):
            out.append(r["headers"].get("authorization", "")[7:])
    return out


def probes_seen(simulator, key: str) -> int:
    return sum(
        1
        for r in simulator.requests
        if PROBE in str(r["body"]) and r["headers"].get("authorization", "") == f"Bearer {key}"
    )


async def billed(gw, user: str) -> tuple[int, int]:
    """(credits left, usage log rows) for ``user``."""
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        quantity = (
            await conn.execute(
                select(t.user_assets.c.quantity_micros).where(
                    t.user_assets.c.app_id == APP_ID, t.user_assets.c.user_id == user
                )
            )
        ).scalar_one()
        rows = (
            await conn.execute(select(func.count()).select_from(t.usage_logs).where(t.usage_logs.c.user == user))
        ).scalar_one()
    return quantity // 1_000_000, rows


async def admin_health(gw) -> dict[str, dict]:
    async with gw.session.get(gw.url + "/api/health/platforms", headers=gw.admin_headers()) as resp:
        assert resp.status == 200
        return {p["id"]: p for p in (await resp.json())["data"]}


async def test_a_key_answering_401_is_disabled_while_the_others_serve(tmp_path, simulator):
    doc = config(f"sqlite:///{tmp_path}/a.db", simulator.url)
    doc["platforms"][0]["api_key"] = "sk-good-one-000001"
    doc["platforms"][0]["api_keys"] = ["sk-revoked-000002", "sk-good-two-000003"]
    simulator.key_switches({"sk-revoked-000002": {"status": 401}})
    gw = await start_gateway(doc)
    try:
        results = [await chat(gw) for _ in range(8)]
        assert [s for s, _ in results] == [200] * 8
        seen = keys_seen(simulator)
        # the revoked key was tried once, then left out; the good keys took turns
        assert seen.count("sk-revoked-000002") == 1
        assert {"sk-good-one-000001", "sk-good-two-000003"} <= set(seen)
        assert len(seen) == 9  # eight calls, one of them retried on another key
        view = (await admin_health(gw))["sim-openai"]
        states = {k["key"]: k["state"] for k in view["keys"]}
        assert states == {"sk-…0001": "up", "sk-…0002": "disabled", "sk-…0003": "up"}
        disabled = [k for k in view["keys"] if k["state"] == "disabled"]
        assert len(disabled) == 1 and disabled[0]["fingerprint"] == health.fingerprint("sk-revoked-000002")
        assert "401" in disabled[0]["reason"]
        assert view["state"] == "up"  # the platform itself stays in rotation
        # keys never leave the process: the Admin API shows them masked
        async with gw.session.get(gw.url + "/api/platforms/sim-openai", headers=gw.admin_headers()) as resp:
            body = await resp.text()
        assert "sk-revoked-000002" not in body and "sk-good-two-000003" not in body
        async with gw.session.get(gw.url + "/metrics") as resp:
            text = await resp.text()
        assert 'aigate_health_changes_total{platform="sim-openai",scope="key",state="down"}' in text
        assert 'outcome="auth"' in text
        assert await billed(gw, "u1") == (50 - 8, 8)  # nothing lost, nothing billed twice
    finally:
        await gw.close()


async def test_a_429_with_retry_after_keeps_the_platform_out_on_both_instances(pg_url, redis_url, simulator):
    # cooldown_s 30 for a 429 without Retry-After: the 2 s below can only come from the header
    plats = two_platforms(simulator.url, cooldown_s=30)
    gw1 = await start_gateway(config(pg_url, simulator.url, redis_url=redis_url, platforms=plats))
    gw2 = await start_gateway(config(pg_url, simulator.url, redis_url=redis_url, platforms=plats))
    try:
        simulator.key_switches({"sk-aaaaaaaaaaaa": {"status": 429, "retry_after": 2}})
        assert (await chat(gw1, text="from 1"))[0] == 200
        assert keys_seen(simulator) == ["sk-aaaaaaaaaaaa", "sk-bbbbbbbbbbbb"]
        mark = len(simulator.requests)
        simulator.key_switches({})  # A would answer again: only the cooldown keeps it out
        target = health.key_target("plat-a", "sk-aaaaaaaaaaaa")
        until_ms = int(await gw2.services.redis.hget(health.COOL, target))
        first_429_s = simulator.requests[0]["time"]
        assert 1.9 <= until_ms / 1000 - first_429_s <= 2.5  # Retry-After, not cooldown_s
        await asyncio.sleep(0.2)  # the change reaches the other instance (pub/sub)
        calls = 0
        while time.time() * 1000 < until_ms + 400:  # through the cooldown and a little past it
            for n, gw in ((2, gw2), (1, gw1)):
                assert (await chat(gw, text=f"from {n}"))[0] == 200
                calls += 1
            await asyncio.sleep(0.15)  # at most ~34 calls: the user has 50 credits
        seen = [r for r in simulator.requests[mark:] if PROBE not in str(r["body"])]
        key = lambda r: r["headers"]["authorization"][7:]  # noqa: E731
        # no instance sent anything to A before its cooldown ended
        assert all(r["time"] * 1000 >= until_ms for r in seen if key(r) == "sk-aaaaaaaaaaaa")
        for n in (1, 2):  # and each instance was served by B during the cooldown
            assert any(
                key(r) == "sk-bbbbbbbbbbbb" and r["time"] * 1000 < until_ms and f"from {n}" in str(r["body"])
                for r in seen
            ), f"instance {n} made no call during the cooldown (machine too slow?)"
        mark = len(simulator.requests)
        assert (await chat(gw2))[0] == 200 and (await chat(gw1))[0] == 200
        assert keys_seen(simulator, mark) == ["sk-aaaaaaaaaaaa", "sk-aaaaaaaaaaaa"]  # back after 2 s
        await gw1.flush()
        assert await billed(gw2, "u1") == (50 - calls - 3, calls + 3)  # nothing lost or billed twice
    finally:
        await gw1.close()
        await gw2.close()


async def test_a_platform_failing_three_times_is_probed_and_returns_after_two_good_probes(tmp_path, simulator):
    plats = two_platforms(simulator.url, failures=3, probe_interval_s=0.3, recoveries=2)
    doc = config(f"sqlite:///{tmp_path}/h.db", simulator.url, platforms=plats)
    receiver = await Receiver().start()
    doc["apps"][0]["webhooks"] = [
        {"url": receiver.url, "events": ["platform.down", "platform.up"], "secret": SECRET, "allow_private": True}
    ]
    gw = await start_gateway(doc)
    try:
        simulator.key_switches({"sk-aaaaaaaaaaaa": {"status": 503}})
        for _ in range(3):  # A fails, B serves each call
            assert (await chat(gw))[0] == 200
        assert keys_seen(simulator) == ["sk-aaaaaaaaaaaa", "sk-bbbbbbbbbbbb"] * 3
        assert (await admin_health(gw))["plat-a"]["state"] == "down"
        mark = len(simulator.requests)
        for _ in range(3):  # down: A is no longer tried
            assert (await chat(gw))[0] == 200
        assert keys_seen(simulator, mark) == ["sk-bbbbbbbbbbbb"] * 3
        await asyncio.sleep(1.5)  # probes run and fail: A stays down
        failed_probes = probes_seen(simulator, "sk-aaaaaaaaaaaa")
        assert failed_probes >= 1
        assert (await admin_health(gw))["plat-a"]["state"] == "down"
        simulator.key_switches({})  # A heals
        deadline = time.monotonic() + 10
        while (await admin_health(gw))["plat-a"]["state"] == "down":
            assert time.monotonic() < deadline, "plat-a never came back"
            await asyncio.sleep(0.1)
        assert probes_seen(simulator, "sk-aaaaaaaaaaaa") >= failed_probes + 2
        mark = len(simulator.requests)
        assert (await chat(gw))[0] == 200
        assert keys_seen(simulator, mark) == ["sk-aaaaaaaaaaaa"]  # back in rotation, first again
        async with gw.session.get(gw.url + "/metrics") as resp:
            text = await resp.text()
        assert 'aigate_health_changes_total{platform="plat-a",scope="platform",state="down"} 1.0' in text
        assert 'aigate_health_changes_total{platform="plat-a",scope="platform",state="up"} 1.0' in text
        assert 'aigate_platform_up{platform="plat-a"} 1.0' in text
        assert await billed(gw, "u1") == (50 - 7, 7)
        # operators hear about it: one signed platform.down, then one platform.up
        delivered = await until(lambda: len(receiver.delivered()) == 2 and receiver.delivered())
        events = sorted(delivered.values(), key=lambda p: p["data"]["time_ms"])
        assert [(e["type"], e["data"]["platform"]) for e in events] == [
            ("platform.down", "plat-a"),
            ("platform.up", "plat-a"),
        ]
        assert "503" in events[0]["data"]["reason"] or "failures" in events[0]["data"]["reason"]
    finally:
        await gw.close()
        await receiver.close()


async def test_a_key_answering_429_cools_down_alone(tmp_path, simulator):
    doc = config(f"sqlite:///{tmp_path}/k.db", simulator.url)
    doc["platforms"][0]["api_keys"] = ["sk-busy-key-000004", "sk-calm-key-000005"]
    doc["platforms"][0]["api_key"] = ""
    simulator.key_switches({"sk-busy-key-000004": {"status": 429, "retry_after": 30}})
    gw = await start_gateway(doc)
    try:
        for _ in range(6):
            assert (await chat(gw))[0] == 200
        seen = keys_seen(simulator)
        assert seen.count("sk-busy-key-000004") == 1  # tried once, then left to cool
        assert seen.count("sk-calm-key-000005") == 6
        view = (await admin_health(gw))["sim-openai"]
        assert view["state"] == "up"  # the platform stays in rotation on its other key
        states = {k["key"]: k["state"] for k in view["keys"]}
        assert states == {"sk-…0004": "cooldown", "sk-…0005": "up"}
        assert await billed(gw, "u1") == (50 - 6, 6)
    finally:
        await gw.close()
