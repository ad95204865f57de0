"""The Admin API shows and edits an app's SPEC §10 settings, secrets masked, with the
file's checks (including the (issuer, audience) pair across apps)."""

from __future__ import annotations

import pytest

from tests.gateway import APP_ID, base_config, start_gateway

SECRET = "an-hs256-issuer-secret-0123456789abcdef"
ISSUER = {"issuer": "https://sb.example.com/auth/v1", "audience": "authenticated", "secret": SECRET}


@pytest.fixture
async def gw(tmp_path, simulator):
    doc = base_config(f"sqlite:///{tmp_path}/a.db", simulator.url)
    doc["apps"][0]["user_tokens"] = [ISSUER]
    gateway = await start_gateway(doc)
    try:
        yield gateway
    finally:
        await gateway.close()


async def test_settings_are_shown_masked_and_edited(gw):
    url = f"{gw.url}/api/apps/{APP_ID}"
    async with gw.session.get(url, headers=gw.admin_headers()) as resp:
        client = (await resp.json())["data"]["client"]
    assert client["user_tokens"][0]["secret"] == "an-…cdef"
    assert client["rate_limits"] == {"per_user_rpm": None, "per_ip_rpm": None, "max_concurrent_streams_per_user": None}
    async with gw.session.patch(url, json={"rate_limits": {"per_user_rpm": 2}}, headers=gw.admin_headers()) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["client"]["user_tokens"][0]["issuer"] == ISSUER["issuer"]  # kept
    statuses = []
    for _ in range(3):  # live at once
        async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=gw.user_headers("alice")) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 429]
    async with gw.session.patch(url, json={"rate_limits": None}, headers=gw.admin_headers()) as resp:
        assert (await resp.json())["data"]["client"]["rate_limits"]["per_user_rpm"] is None


async def test_a_pair_another_app_uses_is_rejected(gw):
    body = {"id": "APP2", "user_tokens": [ISSUER]}
    async with gw.session.post(f"{gw.url}/api/apps", json=body, headers=gw.admin_headers()) as resp:
        assert resp.status == 400
        message = (await resp.json())["message"]
        assert (
            "user_tokens[0]: issuer 'https://sb.example.com/auth/v1' with audience 'authenticated' "
            "is already used by app 'APPTEST'" in message
        )
    async with gw.session.post(f"{gw.url}/api/apps", json={"id": "APP2"}, headers=gw.admin_headers()) as resp:
        assert resp.status == 201
    async with gw.session.patch(
        f"{gw.url}/api/apps/APP2", json={"user_tokens": [ISSUER]}, headers=gw.admin_headers()
    ) as resp:
        assert resp.status == 400 and "already used by app 'APPTEST'" in (await resp.json())["message"]
    two = [ISSUER | {"audience": "x"}, ISSUER | {"audience": "y"}]
    async with gw.session.patch(
        f"{gw.url}/api/apps/APP2", json={"user_tokens": two}, headers=gw.admin_headers()
    ) as resp:
        assert resp.status == 400 and "user_tokens[1].user_prefix" in (await resp.json())["message"]


async def test_a_refused_token_is_accepted_once_the_configuration_accepts_it(gw):
    from tests.idp import claims, hs256_with

    other = {"issuer": "https://new.example.com", "audience": "aud", "secret": SECRET, "user_prefix": "n:"}
    token = hs256_with(SECRET.encode(), claims(other["issuer"], "aud"))
    for _ in range(2):  # the second refusal comes from memory
        async with gw.session.get(f"{gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 401 and "no app accepts issuer" in (await resp.json())["error"]["message"]
    async with gw.session.patch(
        f"{gw.url}/api/apps/{APP_ID}", json={"user_tokens": [ISSUER, other]}, headers=gw.admin_headers()
    ) as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200


async def test_a_masked_secret_sent_back_keeps_the_stored_one(gw):
    """A client edits the list GET showed (secrets masked) without ever holding a secret."""
    from tests.idp import claims, hs256_with

    url = f"{gw.url}/api/apps/{APP_ID}"
    async with gw.session.get(url, headers=gw.admin_headers()) as resp:
        shown = (await resp.json())["data"]["client"]["user_tokens"]
    edited = [shown[0] | {"user_prefix": "sb:"}]
    async with gw.session.patch(url, json={"user_tokens": edited}, headers=gw.admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["data"]["client"]["user_tokens"][0]["secret"] == "an-…cdef"
    token = hs256_with(SECRET.encode(), claims(ISSUER["issuer"], "authenticated", sub="kim"))
    async with gw.session.get(f"{gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200  # verified with the stored secret, not the masked text
    # a masked value matching no stored secret is checked as given (and too short)
    other = [shown[0] | {"issuer": "https://other.example.com"}]
    async with gw.session.patch(url, json={"user_tokens": other}, headers=gw.admin_headers()) as resp:
        assert resp.status == 400
        assert "user_tokens[0].secret" in (await resp.json())["message"]
