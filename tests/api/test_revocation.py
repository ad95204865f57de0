"""Token revocation (SPEC §10) and user-token secret rotation (SPEC §4)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select

from aigate.store import tables as t
from tests.gateway import APP_ID, TOKEN_SECRET, base_config, start_gateway
from tests.idp import JwksServer, claims, rsa_key

ISS = "https://idp.example.com"
KEY = rsa_key("k-1")


@pytest.fixture
async def jwks():
    server = await JwksServer(sets={"idp": [KEY]}).start()
    try:
        yield server
    finally:
        await server.close()


def config(db_url, sim_url, jwks, redis_url=""):
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["apps"][0]["user_tokens"] = [
        {"issuer": ISS, "audience": "aud", "jwks_url": jwks.jwks_url("idp"), "allow_private": True}
    ]
    return doc


async def status_of(gw, token: str, url: str | None = None) -> tuple[int, str]:
    async with gw.session.get(f"{url or gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        return resp.status, (body.get("error") or {}).get("message", "")


async def mint(gw, user_id: str) -> str:
    async with gw.session.post(
        f"{gw.url}/bp/server/user/{user_id}/token", json={"ttl_seconds": 600}, headers=gw.server_headers()
    ) as resp:
        return (await resp.json())["token"]


async def revoke(gw, user_id: str) -> dict:
    async with gw.session.post(f"{gw.url}/bp/server/user/{user_id}/tokens/revoke", headers=gw.server_headers()) as resp:
        assert resp.status == 200
        return await resp.json()


async def next_second() -> None:
    await asyncio.sleep(1.05 - time.time() % 1)


async def test_revocation_refuses_tokens_issued_before_it(db_url, simulator, jwks):
    gw = await start_gateway(config(db_url, simulator.url, jwks))
    try:
        before = await mint(gw, "alice")
        idp_before = KEY.sign(claims(ISS, "aud", sub="alice"))
        no_iat = jwt.encode({"app_id": APP_ID, "sub": "alice", "exp": int(time.time()) + 600}, TOKEN_SECRET)
        bob = await mint(gw, "bob")
        body = await revoke(gw, "alice")
        assert body["user_id"] == "alice" and body["revoked_at"].endswith("Z")
        for token in (before, idp_before, no_iat):
            status, message = await status_of(gw, token)
            assert status == 401 and "revoked" in message
        assert (await status_of(gw, bob))[0] == 200  # another user's tokens are untouched
        await next_second()
        assert (await status_of(gw, await mint(gw, "alice")))[0] == 200
        assert (await status_of(gw, KEY.sign(claims(ISS, "aud", sub="alice"))))[0] == 200
        async with gw.services.engine.connect() as conn:
            rows = (await conn.execute(select(t.token_revocations))).all()
        assert [(r.app_id, r.user_id) for r in rows] == [(APP_ID, "alice")]
    finally:
        await gw.close()


async def test_revocation_survives_a_restart(tmp_path, simulator, jwks):
    doc = config(f"sqlite:///{tmp_path}/r.db", simulator.url, jwks)
    gw = await start_gateway(doc)
    token = await mint(gw, "alice")
    await revoke(gw, "alice")
    await gw.close()
    gw = await start_gateway(doc)
    try:
        assert (await status_of(gw, token))[0] == 401
    finally:
        await gw.close()


async def test_revocation_reaches_the_other_instance(pg_url, redis_url, simulator, jwks):
    a = await start_gateway(config(pg_url, simulator.url, jwks, redis_url))
    b = await start_gateway(config(pg_url, simulator.url, jwks, redis_url))
    try:
        token = await mint(a, "alice")
        assert (await status_of(b, token))[0] == 200
        await revoke(a, "alice")
        for _ in range(40):  # pub/sub is immediate; the poll is the 1 s safety net
            if (await status_of(b, token))[0] == 401:
                break
            await asyncio.sleep(0.05)
        assert (await status_of(b, token))[0] == 401
    finally:
        await b.close()
        await a.close()


async def test_previous_secrets_are_accepted_until_they_expire(tmp_path, simulator):
    old, older = "previous-token-secret-0123456789abcdef", "expired-token-secret-0123456789abcdef"
    doc = base_config(f"sqlite:///{tmp_path}/p.db", simulator.url)
    now = datetime.now(UTC)
    doc["apps"][0]["previous_user_token_secrets"] = [
        {"secret": old, "expires_at": (now + timedelta(days=1)).isoformat()},
        {"secret": older, "expires_at": (now - timedelta(minutes=1)).isoformat()},
    ]
    gw = await start_gateway(doc)
    try:
        assert (await status_of(gw, gw.user_token("alice")))[0] == 200
        assert (await status_of(gw, gw.user_token("alice", secret=old)))[0] == 200
        assert (await status_of(gw, gw.user_token("alice", secret=older)))[0] == 401
        assert (await status_of(gw, gw.user_token("alice", secret="x" * 40)))[0] == 401
        async with gw.session.get(f"{gw.url}/api/apps/{APP_ID}", headers=gw.admin_headers()) as resp:
            shown = (await resp.json())["data"]["client"]["previous_user_token_secrets"]
        assert [s["secret"] for s in shown] == ["pre…cdef", "exp…cdef"]  # masked
    finally:
        await gw.close()
