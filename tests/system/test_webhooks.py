"""Webhooks (SPEC §14): a real receiver on loopback, signatures checked with the
``standardwebhooks`` library, retries, a durable queue that survives a restart and is
claimed once across instances, failed deliveries re-sent through the Admin API, and
private addresses refused unless allowed."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from aigate.config.loader import ConfigError, parse_config
from aigate.engine import webhooks
from aigate.netguard import PublicResolver
from tests.api.test_ai_requests import ai_config
from tests.gateway import APP_ID, start_gateway

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
EVENTS = ["ai_request.succeeded", "ai_request.failed", "asset.low", "platform.down", "platform.up"]


class Receiver:
    """A webhook endpoint: records every hit; answers 500 to the first ``fail_first``
    hits of each webhook-id (all hits while ``down``), then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.down = False
        self.hits: list[tuple[dict[str, str], bytes, int]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        seen = sum(1 for h, _, _ in self.hits if h.get("webhook-id") == msg_id)
        status = 500 if self.down or seen < self.fail_first else 204
        self.hits.append(({k.lower(): v for k, v in request.headers.items()}, body, status))
        return web.Response(status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def delivered(self) -> dict[str, dict]:
        """Verified payloads of the hits answered 2xx, by webhook-id."""
        out: dict[str, dict] = {}
        for headers, body, status in self.hits:
            payload = Webhook(SECRET).verify(body, headers)  # raises on a bad signature
            if status < 300:
                assert headers["webhook-id"] not in out, "delivered twice"
                out[headers["webhook-id"]] = payload
        return out


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.close()


def config(db_url: str, sim_url: str, hook_url: str, *, redis_url: str = "", **delivery) -> dict:
    doc = ai_config(db_url, sim_url, redis_url=redis_url)
    doc["apps"][0]["webhooks"] = [{"url": hook_url, "events": EVENTS, "secret": SECRET, "allow_private": True}]
    doc["webhook_delivery"] = {"retry_delays_s": [0.2], "timeout_s": 5, **delivery}
    return doc


async def submit_video(gw, prompt: str) -> str:
    async with gw.session.post(
        gw.url + "/bp/server/user/u1/ai/ai_request",
        headers=gw.server_headers(),
        json={"strategy": "video", "parameters": {"prompt": prompt, "seconds": 2}},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["request_id"]


async def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_job_events_are_signed_retried_after_500s_and_delivered_once(tmp_path, simulator, receiver):
    receiver.fail_first = 2
    gw = await start_gateway(config(f"sqlite:///{tmp_path}/w.db", simulator.url, receiver.url))
    try:
        ok_id = await submit_video(gw, "waves")
        failed_id = await submit_video(gw, "storm [[sim job_fail=true]]")
        delivered = await until(lambda: len(receiver.delivered()) == 2 and receiver.delivered())
        by_request = {p["data"]["request_id"]: p for p in delivered.values()}
        assert by_request[ok_id]["type"] == "ai_request.succeeded"
        assert by_request[failed_id]["type"] == "ai_request.failed" and by_request[failed_id]["data"]["error"]
        assert by_request[ok_id]["data"]["user_id"] == "u1" and by_request[ok_id]["data"]["strategy"] == "video"
        await asyncio.sleep(0.6)  # nothing more arrives once delivered
        per_id = Counter(h["webhook-id"] for h, _, _ in receiver.hits)
        assert sorted(per_id.values()) == [3, 3]  # 500, 500, then 204: same id each time
        async with gw.session.get(
            gw.url + "/api/webhooks/deliveries?status=delivered", headers=gw.admin_headers()
        ) as resp:
            data = (await resp.json())["data"]
        assert data["total"] == 2 and {d["attempts"] for d in data["items"]} == {3}
    finally:
        await gw.close()


async def test_a_failed_delivery_is_listed_and_can_be_resent(tmp_path, simulator, receiver):
    receiver.down = True
    gw = await start_gateway(
        config(f"sqlite:///{tmp_path}/f.db", simulator.url, receiver.url, retry_delays_s=[0.1], give_up_after_s=1.5)
    )
    try:
        await webhooks.emit(gw.services, APP_ID, "asset.low", {"user_id": "u1", "asset": "ai_credit"})

        async def failed():
            async with gw.session.get(
                gw.url + "/api/webhooks/deliveries?status=failed", headers=gw.admin_headers()
            ) as resp:
                return (await resp.json())["data"]["items"]

        deadline = time.monotonic() + 10
        while not (items := await failed()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        [item] = items
        assert item["attempts"] >= 1 and "HTTP 500" in item["last_error"]
        receiver.down = False
        async with gw.session.post(
            gw.url + f"/api/webhooks/deliveries/{item['msg_id']}/resend", headers=gw.admin_headers()
        ) as resp:
            assert resp.status == 200
        delivered = await until(receiver.delivered)
        assert list(delivered) == [item["msg_id"]]  # the same webhook-id: receivers can de-duplicate
        assert delivered[item["msg_id"]]["type"] == "asset.low"
        async with gw.session.post(
            gw.url + "/api/webhooks/deliveries/msg_nope/resend", headers=gw.admin_headers()
        ) as resp:
            assert resp.status == 404
    finally:
        await gw.close()


async def test_a_delivery_survives_a_restart_of_the_instance_that_queued_it(tmp_path, simulator, receiver):
    receiver.down = True
    db = f"sqlite:///{tmp_path}/r.db"
    gw = await start_gateway(config(db, simulator.url, receiver.url, retry_delays_s=[0.2]))
    request_id = await submit_video(gw, "sunrise")
    await until(lambda: receiver.hits)  # queued and tried: the receiver is down
    await gw.close()
    receiver.down = False
    count = len(receiver.hits)
    gw = await start_gateway(config(db, simulator.url, receiver.url, retry_delays_s=[0.2]))
    try:
        delivered = await until(receiver.delivered)
        [payload] = delivered.values()
        assert payload["data"]["request_id"] == request_id
        assert len(receiver.hits) > count
        assert len({h["webhook-id"] for h, _, _ in receiver.hits}) == 1
    finally:
        await gw.close()


async def test_two_instances_claim_each_delivery_once(pg_url, redis_url, simulator, receiver):
    gw1 = await start_gateway(config(pg_url, simulator.url, receiver.url, redis_url=redis_url))
    gw2 = await start_gateway(config(pg_url, simulator.url, receiver.url, redis_url=redis_url))
    try:
        await asyncio.gather(
            *(webhooks.emit((gw1, gw2)[i % 2].services, APP_ID, "asset.low", {"n": i}) for i in range(60))
        )
        delivered = await until(lambda: len(receiver.delivered()) == 60 and receiver.delivered(), timeout=20)
        assert sorted(p["data"]["n"] for p in delivered.values()) == list(range(60))
        assert len(receiver.hits) == 60  # no delivery was sent twice
    finally:
        await gw1.close()
        await gw2.close()


def test_a_private_address_is_refused_unless_allowed(tmp_path):
    doc = config(f"sqlite:///{tmp_path}/p.db", "http://127.0.0.1:9", "http://127.0.0.1:8081/hook")
    hooks = doc["apps"][0]["webhooks"]
    for url in (
        "http://127.0.0.1:8081/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
        "http://localhost:9000/hook",
    ):
        hooks[0] = {**hooks[0], "url": url, "allow_private": False}
        with pytest.raises(ConfigError) as err:
            parse_config(orjson.loads(orjson.dumps(doc)), env={})
        assert any(e.startswith("apps[0].webhooks[0]") and "allow_private" in e for e in err.value.errors)
    hooks[0] = {**hooks[0], "url": "http://127.0.0.1:8081/hook", "allow_private": True}
    parse_config(orjson.loads(orjson.dumps(doc)), env={})
    hooks[0] = {**hooks[0], "url": "https://hooks.example.com/x", "allow_private": False}
    parse_config(orjson.loads(orjson.dumps(doc)), env={})


async def test_names_that_resolve_to_private_addresses_are_refused_when_delivering():
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="loopback or private"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_asset_low_is_sent_once_when_a_charge_crosses_the_threshold(tmp_path, simulator, receiver):
    doc = config(f"sqlite:///{tmp_path}/l.db", simulator.url, receiver.url)
    doc["apps"][0]["assets"][0]["low_quantity"] = 47  # 50 credits, 1 per chat
    gw = await start_gateway(doc)
    try:
        body = {
            "strategy": "free-normal",
            "parameters": {"example_string": "x"},
            "messages": [{"role": "user", "content": "hi"}],
        }
        for _ in range(5):
            async with gw.session.post(gw.url + "/bp/ai/chat", json=body, headers=gw.user_headers("u7")) as resp:
                assert resp.status == 200
        delivered = await until(receiver.delivered)
        await asyncio.sleep(0.5)
        [payload] = receiver.delivered().values()  # 49, 48 no; 47 crosses; 46, 45 no
        assert payload["type"] == "asset.low"
        assert payload["data"] == {"user_id": "u7", "asset": "ai_credit", "quantity": 47.0, "low_quantity": 47}
        assert len(delivered) == 1
    finally:
        await gw.close()


async def test_endpoints_through_the_admin_api(tmp_path, simulator, receiver):
    doc = config(f"sqlite:///{tmp_path}/e.db", simulator.url, receiver.url)
    doc["apps"][0]["webhooks"] = []
    gw = await start_gateway(doc)
    url = gw.url + f"/api/apps/{APP_ID}/webhooks"
    try:
        private = {"url": receiver.url, "events": ["asset.low"], "secret": SECRET}
        async with gw.session.put(url, json=[private], headers=gw.admin_headers()) as resp:
            body = await resp.json()
        assert resp.status == 400 and "allow_private" in body["message"] and body["message"].startswith("[0]")
        async with gw.session.put(url, json=[{**private, "secret": "nope"}], headers=gw.admin_headers()) as resp:
            assert resp.status == 400 and "[0].secret" in (await resp.json())["message"]
        async with gw.session.put(url, json=[{**private, "allow_private": True}], headers=gw.admin_headers()) as resp:
            assert resp.status == 200
        async with gw.session.get(url, headers=gw.admin_headers()) as resp:
            [shown] = (await resp.json())["data"]
        assert shown["secret"] != SECRET and shown["secret"].endswith(SECRET[-4:])
        # a read-edit-write round trip keeps the secret: the delivery still verifies with it
        async with gw.session.put(
            url, json=[{**shown, "events": ["asset.low", "platform.up"]}], headers=gw.admin_headers()
        ) as resp:
            assert resp.status == 200
        await gw.services.cache.reload()
        await webhooks.emit(gw.services, APP_ID, "platform.up", {"platform": "x"})
        delivered = await until(receiver.delivered)  # verified with SECRET
        assert [p["type"] for p in delivered.values()] == ["platform.up"]
        async with gw.session.get(gw.url + "/api/apps/NOPE/webhooks", headers=gw.admin_headers()) as resp:
            assert resp.status == 404
    finally:
        await gw.close()
