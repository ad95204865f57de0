"""CORS for the client App API (SPEC §10), over real HTTP: preflights, the headers of real
responses (errors included), and the surfaces that never answer CORS."""

from __future__ import annotations

import pytest

from tests.gateway import APP_ID, RELAY_KEY, base_config, start_gateway

ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://other-app.example.com"


@pytest.fixture
async def gw(tmp_path, simulator):
    doc = base_config(f"sqlite:///{tmp_path}/c.db", simulator.url)
    doc["apps"][0]["cors"] = {"origins": [ORIGIN], "max_age_s": 900}
    doc["apps"][0]["attestation"] = {
        "header": "X-Firebase-AppCheck",
        "issuer": "https://att.example.com",
        "audience": "a",
        "jwks_url": "https://att.example.com/jwks",
        "required": False,
    }
    doc["apps"].append(
        {
            "id": "APPOTHER",
            "user_token_secret": "other-app-token-secret-0123456789abcdef",
            "cors": {"origins": [OTHER_ORIGIN]},
        }
    )
    gateway = await start_gateway(doc)
    try:
        yield gateway
    finally:
        await gateway.close()


async def preflight(gw, path: str, origin: str | None, method: str = "POST"):
    headers = {"Access-Control-Request-Method": method, "Access-Control-Request-Headers": "authorization, content-type"}
    if origin:
        headers["Origin"] = origin
    async with gw.session.options(f"{gw.url}{path}", headers=headers) as resp:
        return resp.status, resp.headers


async def test_preflight_of_a_listed_origin(gw):
    status, headers = await preflight(gw, "/bp/ai/chat", ORIGIN)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Methods"] == "POST"
    allowed = [h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")]
    assert allowed == ["Authorization", "Content-Type", "X-Firebase-AppCheck"]
    assert headers["Access-Control-Max-Age"] == "900"
    assert headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers
    # an origin another app lists passes the preflight too (it carries no token)
    status, headers = await preflight(gw, "/bp/ai/chat/history", OTHER_ORIGIN, "GET")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == OTHER_ORIGIN
    assert headers["Access-Control-Max-Age"] == "600"


@pytest.mark.parametrize("origin", ["https://evil.example.com", "null", "*", f"{ORIGIN}.evil.com", None])
async def test_preflight_of_anything_else_is_refused(gw, origin):
    status, headers = await preflight(gw, "/bp/ai/chat", origin)
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"


@pytest.mark.parametrize("path", ["/bp/server/user/u/ai/chat", "/v1/chat/completions", "/api/apps"])
async def test_other_surfaces_never_answer_cors(gw, path):
    status, headers = await preflight(gw, path, ORIGIN)
    assert status in (401, 404, 405)
    assert "Access-Control-Allow-Origin" not in headers


async def test_real_responses_carry_the_origin_only_for_the_authenticated_app(gw):
    async def get(token: str | None, origin: str):
        headers = {"Origin": origin}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=headers) as resp:
            return resp.status, resp.headers

    status, headers = await get(gw.user_token("alice"), ORIGIN)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Expose-Headers"] == "Retry-After" and headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers
    # the other app's origin with this app's token: no
    status, headers = await get(gw.user_token("alice"), OTHER_ORIGIN)
    assert status == 200 and "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    # an error of the authenticated app carries it too
    async with gw.session.get(
        f"{gw.url}/bp/ai/chat/history", headers={"Origin": ORIGIN, "Authorization": f"Bearer {gw.user_token('alice')}"}
    ) as resp:
        assert resp.status == 400 and resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    # no authenticated app, no origin
    status, headers = await get(None, ORIGIN)
    assert status == 401 and "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    # requests without Origin (apps, servers) are untouched apart from Vary
    async with gw.session.get(f"{gw.url}/bp/ai/assets", headers=gw.user_headers("alice")) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    # the relay never answers CORS, even to a listed origin
    async with gw.session.get(
        f"{gw.url}/v1/models", headers={"Origin": ORIGIN, "Authorization": f"Bearer {RELAY_KEY}"}
    ) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_admin_api_edits_cors(gw):
    url = f"{gw.url}/api/apps/{APP_ID}"
    async with gw.session.patch(
        url, json={"cors": {"origins": ["https://new.example.com"]}}, headers=gw.admin_headers()
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["client"]["cors"]["origins"] == ["https://new.example.com"]
    status, _ = await preflight(gw, "/bp/ai/chat", ORIGIN)
    assert status == 403  # the change is live at once
    status, headers = await preflight(gw, "/bp/ai/chat", "https://new.example.com")
    assert status == 204
    async with gw.session.patch(url, json={"cors": {"origins": ["null"]}}, headers=gw.admin_headers()) as resp:
        assert resp.status == 400 and "cors.origins" in (await resp.json())["message"]
