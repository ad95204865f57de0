"""App attestation (SPEC §10): an attestation JWT (App Check style) in a configured header,
verified against its own JWKS; required, consume-once (shared by two instances through
Redis) and monitor-only; never interchangeable with a user token."""

from __future__ import annotations

import secrets

import pytest
from prometheus_client import REGISTRY

from tests.gateway import APP_ID, base_config, start_gateway
from tests.idp import JwksServer, claims, rsa_key

HEADER = "X-Firebase-AppCheck"
ATT_ISS = "https://firebaseappcheck.googleapis.com/123456"
ATT_AUD = "projects/123456"
USER_ISS = "https://securetoken.google.com/demo-project"

APP_CHECK, USER_KEY, STRANGER = rsa_key("ac-1"), rsa_key("user-1"), rsa_key("ac-1")


def attestation_config(db_url: str, sim_url: str, jwks: JwksServer, redis_url: str = "", **attestation) -> dict:
    doc = base_config(db_url, sim_url, redis_url=redis_url)
    doc["apps"][0]["attestation"] = {
        "header": HEADER,
        "issuer": ATT_ISS,
        "audience": ATT_AUD,
        "jwks_url": jwks.jwks_url("appcheck"),
        "allow_private": True,
        **attestation,
    }
    doc["apps"][0]["user_tokens"] = [
        {"issuer": USER_ISS, "audience": "demo-project", "jwks_url": jwks.jwks_url("users"), "allow_private": True}
    ]
    return doc


def app_check_token(key=APP_CHECK, **extra) -> str:
    return key.sign(
        claims(ATT_ISS, [ATT_AUD, "projects/demo-project"], sub="1:123456:web:abc", jti=secrets.token_hex(8), **extra)
    )


@pytest.fixture
async def jwks():
    server = await JwksServer(sets={"appcheck": [APP_CHECK], "users": [USER_KEY]}).start()
    try:
        yield server
    finally:
        await server.close()


async def call(gw, user_token: str | None, attestation: str | None, url: str | None = None) -> tuple[int, dict]:
    headers = {}
    if user_token:
        headers["Authorization"] = f"Bearer {user_token}"
    if attestation:
        headers[HEADER] = attestation
    async with gw.session.get(f"{url or gw.url}/bp/ai/assets", headers=headers) as resp:
        return resp.status, await resp.json()


def failures(mode: str) -> float:
    return REGISTRY.get_sample_value("aigate_attestation_failures_total", {"app": APP_ID, "mode": mode}) or 0


async def test_required_attestation(tmp_path, simulator, jwks):
    gw = await start_gateway(attestation_config(f"sqlite:///{tmp_path}/a.db", simulator.url, jwks, consume_once=True))
    try:
        user = gw.user_token("alice")
        status, body = await call(gw, user, None)
        assert status == 401 and f"missing attestation token ({HEADER} header)" in body["error"]["message"]
        status, body = await call(gw, user, app_check_token(STRANGER))  # signed by someone else
        assert status == 401 and HEADER in body["error"]["message"] and "bad signature" in body["error"]["message"]
        status, body = await call(gw, user, app_check_token(exp=1))
        assert status == 401 and HEADER in body["error"]["message"] and "expired" in body["error"]["message"]
        no_jti = APP_CHECK.sign(claims(ATT_ISS, ATT_AUD))
        status, body = await call(gw, user, no_jti)
        assert status == 401 and "missing claim 'jti'" in body["error"]["message"]
        token = app_check_token()
        assert (await call(gw, user, token))[0] == 200
        status, body = await call(gw, user, token)  # replayed
        assert status == 401 and "already used" in body["error"]["message"] and HEADER in body["error"]["message"]
        assert (await call(gw, user, app_check_token()))[0] == 200
        # a user token of an identity provider needs attestation too
        idp_user = USER_KEY.sign(claims(USER_ISS, "demo-project"))
        assert (await call(gw, idp_user, None))[0] == 401
        assert (await call(gw, idp_user, app_check_token()))[0] == 200
        # the app server is not a client: no attestation on /bp/server
        async with gw.session.get(f"{gw.url}/bp/server/user/alice/ai/assets", headers=gw.server_headers()) as resp:
            assert resp.status == 200
    finally:
        await gw.close()


async def test_attestation_and_user_tokens_are_never_accepted_for_each_other(tmp_path, simulator, jwks):
    gw = await start_gateway(attestation_config(f"sqlite:///{tmp_path}/a.db", simulator.url, jwks))
    try:
        idp_user = USER_KEY.sign(claims(USER_ISS, "demo-project"))
        status, body = await call(gw, app_check_token(), app_check_token())  # attestation as the user token
        assert status == 401 and "no app accepts issuer" in body["error"]["message"]
        status, body = await call(gw, idp_user, idp_user)  # user token as the attestation
        assert status == 401 and HEADER in body["error"]["message"]
    finally:
        await gw.close()


async def test_monitor_mode_counts_but_never_refuses(tmp_path, simulator, jwks):
    gw = await start_gateway(
        attestation_config(f"sqlite:///{tmp_path}/a.db", simulator.url, jwks, required=False, monitor=True)
    )
    try:
        before = failures("monitor")
        user = gw.user_token("alice")
        assert (await call(gw, user, None))[0] == 200
        assert (await call(gw, user, app_check_token(STRANGER)))[0] == 200
        assert (await call(gw, user, app_check_token()))[0] == 200
        assert failures("monitor") - before == 2
        async with gw.session.get(f"{gw.url}/metrics") as resp:
            assert 'aigate_attestation_failures_total{app="APPTEST",mode="monitor"}' in await resp.text()
    finally:
        await gw.close()


async def test_a_replay_is_refused_across_two_instances(pg_url, redis_url, simulator, jwks):
    a = await start_gateway(attestation_config(pg_url, simulator.url, jwks, redis_url, consume_once=True))
    b = await start_gateway(attestation_config(pg_url, simulator.url, jwks, redis_url, consume_once=True))
    try:
        user = a.user_token("alice")
        token = app_check_token()
        assert (await call(a, user, token))[0] == 200
        status, body = await call(b, user, token)
        assert status == 401 and "already used" in body["error"]["message"]
        fresh = app_check_token()
        assert (await call(b, user, fresh))[0] == 200
        assert (await call(a, user, fresh))[0] == 401
    finally:
        await b.close()
        await a.close()
