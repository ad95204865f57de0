"""Admin API CRUD over HTTP: apps, keys, relay tokens, platforms, models, strategies,
instructions and asset policies, on each database backend."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from aigate.auth.keys import hash_key
from aigate.store import tables as t
from tests.gateway import ADMIN_KEY, APP_ID, TOKEN_SECRET, base_config, start_gateway

NO_UPSTREAM = "http://127.0.0.1:9"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

STRATEGY = {
    "name": "summer",
    "model": "gpt-4o-mini",
    "platforms": ["sim-openai"],
    "system_prompt": "Be {{ .mood }}.",
    "cost": {"asset": "ai_credit", "per_request": 2},
}
INSTRUCTION = {
    "name": "translate",
    "model": "claude-3-5-haiku",
    "messages": [{"role": "user", "content": "Translate {{ .text }}"}],
}


@pytest.fixture
async def api(db_url):
    gateway = await start_gateway(base_config(db_url, NO_UPSTREAM))
    try:
        yield gateway
    finally:
        await gateway.close()


async def call(gw, method: str, path: str, body=None, *, headers=None, params=None):
    headers = gw.admin_headers() if headers is None else headers
    async with gw.session.request(method, f"{gw.url}/api{path}", json=body, headers=headers, params=params) as resp:
        return resp.status, await resp.json(content_type=None)


def assert_error(status: int, doc: dict, expected: int, *fragments: str) -> None:
    assert status == expected, doc
    assert doc["success"] is False and doc["data"] is None
    for fragment in fragments:
        assert fragment in doc["message"], doc["message"]


async def db_rows(gw, table, *where):
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(table).where(*where))).all()


async def test_admin_key_is_required(api):
    for method, path in [
        ("GET", "/apps"),
        ("POST", "/platforms"),
        ("GET", "/models"),
        ("DELETE", f"/apps/{APP_ID}/users/u1"),
        ("GET", f"/apps/{APP_ID}/strategies"),
    ]:
        status, doc = await call(api, method, path, headers={})
        assert_error(status, doc, 401, "admin key")
        status, doc = await call(api, method, path, headers={"Authorization": "Bearer nope"})
        assert status == 401


async def test_openapi_lists_the_crud_paths(api):
    status, doc = await call(api, "GET", "/openapi.json", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 200
    paths = doc["paths"]
    for path in [
        "/apps",
        "/apps/{app_id}",
        "/apps/{app_id}/server_keys",
        "/apps/{app_id}/relay_tokens/{name}",
        "/apps/{app_id}/strategies/{name}",
        "/apps/{app_id}/instructions",
        "/apps/{app_id}/assets/{name}",
        "/apps/{app_id}/users/{user_id}",
        "/apps/{app_id}/users/{user_id}/ledger",
        "/platforms/{platform_id}",
        "/models/{name}",
    ]:
        assert path in paths, path
        for op in paths[path].values():
            assert op.get("summary"), (path, op)
    create = paths["/apps/{app_id}/strategies"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"].endswith("/StrategyCfg")


async def test_apps_crud(api):
    status, doc = await call(api, "GET", "/apps")
    assert status == 200 and doc["success"] is True and doc["message"] == ""
    (app,) = doc["data"]
    assert app["id"] == APP_ID and app["strategies"] == ["free-normal"] and app["server_keys"] == ["backend"]
    assert app["user_token_secret"] == f"{TOKEN_SECRET[:3]}…{TOKEN_SECRET[-4:]}"  # masked

    status, doc = await call(
        api,
        "POST",
        "/apps",
        {
            "id": "APPNEW",
            "name": "New",
            "assets": [{"name": "gems", "initial_quantity": 3}],
            "strategies": [dict(STRATEGY, cost={"asset": "gems", "per_request": 1})],
        },
    )
    assert status == 201, doc
    secret = doc["data"]["user_token_secret"]
    assert secret.startswith("uts-") and len(secret) > 30  # generated, shown once
    assert doc["data"]["strategies"] == ["summer"] and doc["data"]["assets"] == ["gems"]
    assert api.services.snapshot.apps["APPNEW"].user_token_secret == secret

    status, doc = await call(api, "GET", "/apps/APPNEW")
    assert status == 200 and doc["data"]["user_token_secret"] != secret and "…" in doc["data"]["user_token_secret"]

    assert_error(*await call(api, "POST", "/apps", {"id": "APPNEW", "user_token_secret": "x" * 40}), 409, "APPNEW")
    assert_error(
        *await call(api, "POST", "/apps", {"id": "APPBAD", "strategies": [dict(STRATEGY, platforms=["nowhere"])]}),
        400,
        "strategies[0].platforms[0]: unknown platform 'nowhere'",
        "strategies[0].cost.asset: unknown asset",
    )
    assert_error(*await call(api, "POST", "/apps", {"id": "bad id!", "colour": 1}), 400, "id", "colour")

    status, doc = await call(api, "PATCH", "/apps/APPNEW", {"name": "Renamed", "enabled": False})
    assert status == 200 and doc["data"]["name"] == "Renamed" and doc["data"]["enabled"] is False
    assert api.services.snapshot.apps["APPNEW"].enabled is False
    status, doc = await call(api, "PUT", "/apps/APPNEW", {"enabled": True, "user_token_secret": "s" * 40})
    assert status == 200 and doc["data"]["name"] == "Renamed" and doc["data"]["enabled"] is True
    assert api.services.snapshot.apps["APPNEW"].user_token_secret == "s" * 40
    assert_error(*await call(api, "PATCH", "/apps/APPNEW", {"user_token_secret": "short"}), 400, "user_token_secret")

    status, doc = await call(api, "DELETE", "/apps/APPNEW")  # disables
    assert status == 200 and doc["data"]["enabled"] is False
    assert api.services.snapshot.apps["APPNEW"].enabled is False
    status, doc = await call(api, "DELETE", "/apps/APPNEW", params={"purge": "true"})
    assert status == 200
    assert "APPNEW" not in api.services.snapshot.apps
    assert await db_rows(api, t.strategies, t.strategies.c.app_id == "APPNEW") == []
    assert_error(*await call(api, "GET", "/apps/APPNEW"), 404, "unknown app 'APPNEW'")
    assert_error(*await call(api, "DELETE", "/apps/APPNEW"), 404)
    assert_error(*await call(api, "PATCH", "/apps/NOPE", {"name": "x"}), 404)


async def test_server_keys_are_shown_once_and_stored_hashed(api):
    base = f"/apps/{APP_ID}/server_keys"
    status, doc = await call(api, "POST", base, {"name": "mobile"})
    assert status == 201, doc
    key = doc["data"]["key"]
    assert key.startswith("ak-") and doc["data"]["prefix"] == key[:8]
    (row,) = await db_rows(api, t.server_keys, t.server_keys.c.name == "mobile")
    assert HEX64.match(row.key_hash) and row.key_hash == hash_key(key) and key not in str(tuple(row))
    assert api.services.snapshot.server_keys[hash_key(key)].app_id == APP_ID

    status, doc = await call(api, "GET", base)
    assert status == 200 and [k["name"] for k in doc["data"]] == ["backend", "mobile"]
    assert all("key" not in k for k in doc["data"]) and key not in str(doc)

    supplied = "my-own-server-key-0000"
    status, doc = await call(api, "POST", base, {"name": "ops", "key": supplied})
    assert status == 201 and doc["data"]["key"] == supplied
    assert_error(*await call(api, "POST", base, {"name": "ops"}), 409, "ops")
    assert_error(*await call(api, "POST", base, {"name": "dup", "key": supplied}), 409)
    assert_error(*await call(api, "POST", base, {"name": "x", "key": "short"}), 400, "key")

    status, doc = await call(api, "PATCH", f"{base}/mobile", {"enabled": False})
    assert status == 200 and doc["data"]["enabled"] is False
    assert api.services.snapshot.server_keys[hash_key(key)].enabled is False
    status, doc = await call(api, "DELETE", f"{base}/mobile")
    assert status == 200 and hash_key(key) not in api.services.snapshot.server_keys
    assert_error(*await call(api, "DELETE", f"{base}/mobile"), 404, "mobile")
    assert_error(*await call(api, "GET", "/apps/NOPE/server_keys"), 404, "NOPE")


async def test_relay_tokens_crud(api):
    base = f"/apps/{APP_ID}/relay_tokens"
    body = {
        "name": "partner",
        "models": ["gpt-4o-mini"],
        "rpm": 60,
        "spend_limit": "12.5",
        "expires_at": "2030-01-02T03:04:05Z",
    }
    status, doc = await call(api, "POST", base, body)
    assert status == 201, doc
    created = doc["data"]
    key = created["key"]
    assert key.startswith("sk-") and created["rpm"] == 60 and created["models"] == ["gpt-4o-mini"]
    assert created["expires_at"].startswith("2030-01-02T03:04:05")
    (row,) = await db_rows(api, t.relay_tokens, t.relay_tokens.c.name == "partner")
    assert row.key_hash == hash_key(key) and HEX64.match(row.key_hash)
    token = api.services.snapshot.relay_tokens[hash_key(key)]
    assert token.name == "partner" and token.rpm == 60 and token.id == created["id"]

    status, doc = await call(api, "GET", f"{base}/partner")
    assert status == 200 and "key" not in doc["data"] and doc["data"]["prefix"] == key[:8]
    status, doc = await call(api, "GET", base)
    assert [r["name"] for r in doc["data"]] == ["partner", "sdk"] and key not in str(doc)

    status, doc = await call(api, "PATCH", f"{base}/partner", {"rpm": None, "tpm": 1000})
    assert status == 200 and doc["data"]["rpm"] is None and doc["data"]["tpm"] == 1000
    assert doc["data"]["models"] == ["gpt-4o-mini"]  # untouched by PATCH
    status, doc = await call(api, "PUT", f"{base}/partner", {"enabled": False})
    assert status == 200 and doc["data"] | {"created_at": ""} == {
        "id": created["id"],
        "name": "partner",
        "prefix": key[:8],
        "models": [],
        "rpm": None,
        "tpm": None,
        "spend_limit": None,
        "expires_at": None,
        "enabled": False,
        "created_at": "",
    }
    assert api.services.snapshot.relay_tokens[hash_key(key)].enabled is False
    assert_error(*await call(api, "PATCH", f"{base}/partner", {"rpm": 0}), 400, "rpm")
    assert_error(*await call(api, "POST", base, {"name": "partner"}), 409)

    status, _ = await call(api, "DELETE", f"{base}/partner")
    assert status == 200 and hash_key(key) not in api.services.snapshot.relay_tokens
    assert_error(*await call(api, "GET", f"{base}/partner"), 404, "partner")


async def test_platforms_crud_masks_keys(api):
    status, doc = await call(api, "GET", "/platforms")
    assert status == 200 and [p["id"] for p in doc["data"]] == ["sim-openai", "sim-anthropic", "sim-gemini"]
    assert "sk-sim" not in str(doc) and all(p["number"] > 0 for p in doc["data"])

    secret = "sk-live-0123456789abcdef"
    body = {
        "id": "deepseek",
        "type": "openai_compatible",
        "base_url": "https://api.deepseek.com/v1/",
        "api_key": secret,
        "models": ["deepseek-chat"],
        "priority": 3,
    }
    status, doc = await call(api, "POST", "/platforms", body)
    assert status == 201, doc
    assert doc["data"]["api_key"] == "sk-…cdef" and doc["data"]["base_url"] == "https://api.deepseek.com/v1"
    number = doc["data"]["number"]
    assert api.services.snapshot.platforms["deepseek"].number == number
    assert api.services.snapshot.platform_cfgs["deepseek"].api_key == secret

    # a read-edit-write round trip keeps the stored key
    status, doc = await call(api, "GET", "/platforms/deepseek")
    edited = {k: v for k, v in doc["data"].items() if k != "number"} | {"priority": 7}
    status, doc = await call(api, "PUT", "/platforms/deepseek", edited)
    assert status == 200 and doc["data"]["priority"] == 7 and doc["data"]["number"] == number
    assert api.services.snapshot.platform_cfgs["deepseek"].api_key == secret
    status, doc = await call(api, "PATCH", "/platforms/deepseek", {"enabled": False})
    assert status == 200 and doc["data"]["enabled"] is False and doc["data"]["priority"] == 7
    assert api.services.snapshot.platforms["deepseek"].enabled is False
    status, doc = await call(api, "PATCH", "/platforms/deepseek", {"api_key": "sk-new-key-000000000000"})
    assert api.services.snapshot.platform_cfgs["deepseek"].api_key == "sk-new-key-000000000000"

    assert_error(*await call(api, "POST", "/platforms", body), 409, "deepseek")
    assert_error(
        *await call(api, "POST", "/platforms", dict(body, id="x", base_url="ftp://h", colour=1)),
        400,
        "base_url",
        "colour",
    )
    assert_error(
        *await call(api, "POST", "/platforms", dict(body, id="job", type="http_job")),
        400,
        "options.submit: required for type 'http_job'",
    )
    assert_error(*await call(api, "PUT", "/platforms/deepseek", dict(body, id="other")), 400, "id: must match")
    assert_error(*await call(api, "PATCH", "/platforms/deepseek", {"weight": 0}), 400, "weight")
    # no longer serving a model a strategy needs: refused, naming the strategy
    assert_error(
        *await call(api, "PATCH", "/platforms/sim-openai", {"models": ["gpt-4o"]}),
        409,
        f"apps[{APP_ID}].strategies[free-normal].model",
    )
    # referenced by a strategy: refused, naming it
    assert_error(*await call(api, "DELETE", "/platforms/sim-openai"), 409, f"apps[{APP_ID}].strategies[free-normal]")
    assert "sim-openai" in api.services.snapshot.platforms

    status, _ = await call(api, "DELETE", "/platforms/deepseek")
    assert status == 200 and "deepseek" not in api.services.snapshot.platforms
    assert_error(*await call(api, "GET", "/platforms/deepseek"), 404, "deepseek")
    assert_error(*await call(api, "PATCH", "/platforms/deepseek", {"enabled": True}), 404)


async def test_models_crud(api):
    status, doc = await call(api, "GET", "/models")
    assert status == 200 and "gpt-4o-mini" in [m["name"] for m in doc["data"]]

    body = {"name": "openai/gpt-4o", "price": {"input_price": "2.5", "output_price": 10}}
    status, doc = await call(api, "POST", "/models", body)
    assert status == 201, doc
    assert str(api.services.snapshot.price("openai/gpt-4o").output_price) == "10"
    status, doc = await call(api, "GET", "/models/openai/gpt-4o")
    assert status == 200 and doc["data"]["price"]["input_price"] == "2.5"

    status, doc = await call(
        api, "PUT", "/models/openai/gpt-4o", {"name": "openai/gpt-4o", "price": {"per_request_price": 0.01}}
    )
    assert status == 200
    price = api.services.snapshot.price("openai/gpt-4o")
    assert str(price.per_request_price) == "0.01" and price.input_price == 0

    assert_error(*await call(api, "POST", "/models", body), 409)
    assert_error(
        *await call(api, "POST", "/models", {"name": "m", "price": {"input_price": -1}}),
        400,
        "price.input_price",
        "negative",
    )
    assert_error(*await call(api, "PUT", "/models/openai/gpt-4o", {"name": "other"}), 400, "name")
    status, _ = await call(api, "DELETE", "/models/openai/gpt-4o")
    assert status == 200 and "openai/gpt-4o" not in api.services.snapshot.prices
    assert_error(*await call(api, "GET", "/models/openai/gpt-4o"), 404, "openai/gpt-4o")
    assert_error(*await call(api, "PUT", "/models/nope", {"name": "nope"}), 404)


async def test_strategies_crud_with_file_checks(api):
    base = f"/apps/{APP_ID}/strategies"
    status, doc = await call(api, "POST", base, STRATEGY)
    assert status == 201, doc
    assert doc["data"]["system_prompt"] == "Be {{ .mood }}." and doc["data"]["module"] == "chat"
    assert api.services.snapshot.apps[APP_ID].strategies["summer"].cost.per_request == 2

    status, doc = await call(api, "GET", base)
    assert [s["name"] for s in doc["data"]] == ["free-normal", "summer"]
    status, doc = await call(api, "GET", f"{base}/summer")
    assert doc["data"]["platforms"] == ["sim-openai"]

    # PUT replaces the whole object: fields left out fall back to defaults
    status, doc = await call(api, "PUT", f"{base}/summer", {"name": "summer", "model": "claude-3-5-haiku"})
    assert status == 200 and doc["data"]["platforms"] == [] and doc["data"]["cost"] is None
    assert api.services.snapshot.apps[APP_ID].strategies["summer"].model == "claude-3-5-haiku"
    status, doc = await call(api, "PATCH", f"{base}/summer", {"enabled": False, "params": {"temperature": 0.2}})
    assert status == 200 and doc["data"]["model"] == "claude-3-5-haiku" and doc["data"]["enabled"] is False
    assert api.services.snapshot.apps[APP_ID].strategies["summer"].enabled is False

    assert_error(
        *await call(api, "POST", base, dict(STRATEGY, name="s2", platforms=["ghost"])),
        400,
        "platforms[0]: unknown platform 'ghost'",
    )
    assert_error(
        *await call(api, "POST", base, dict(STRATEGY, name="s2", cost={"asset": "gold", "per_request": 1})),
        400,
        "cost.asset: unknown asset 'gold'",
    )
    assert_error(
        *await call(api, "POST", base, dict(STRATEGY, name="s2", model="gpt-9")), 400, "model: unknown model 'gpt-9'"
    )
    assert_error(
        *await call(api, "POST", base, dict(STRATEGY, name="s2", module="image")),
        400,
        "request: required for module 'image'",
    )
    assert_error(
        *await call(api, "POST", base, dict(STRATEGY, name="s2", system_prompt="{{ .a ")),
        400,
        "system_prompt: template error",
    )
    assert_error(*await call(api, "POST", base, dict(STRATEGY, name="s2", limit={"count": 0})), 400, "limit.count")
    assert_error(
        *await call(api, "PATCH", f"{base}/summer", {"platforms": ["ghost"]}),
        400,
        "platforms[0]: unknown platform 'ghost'",
    )
    assert_error(*await call(api, "PATCH", f"{base}/summer", {"typo": 1}), 400, "typo: unknown field")
    assert_error(*await call(api, "PUT", f"{base}/summer", dict(STRATEGY, name="other")), 400, "name: must match")
    assert_error(*await call(api, "POST", base, STRATEGY), 409, "summer")
    assert "s2" not in api.services.snapshot.apps[APP_ID].strategies

    status, _ = await call(api, "DELETE", f"{base}/summer")
    assert status == 200 and "summer" not in api.services.snapshot.apps[APP_ID].strategies
    assert_error(*await call(api, "GET", f"{base}/summer"), 404, "unknown strategy 'summer'")
    assert_error(*await call(api, "POST", "/apps/NOPE/strategies", STRATEGY), 404, "unknown app 'NOPE'")


async def test_instructions_and_asset_policies_crud(api):
    base = f"/apps/{APP_ID}/instructions"
    status, doc = await call(api, "POST", base, INSTRUCTION)
    assert status == 201, doc
    assert "translate" in api.services.snapshot.apps[APP_ID].instructions
    status, doc = await call(api, "PUT", f"{base}/translate", dict(INSTRUCTION, max_token=50))
    assert status == 200 and api.services.snapshot.apps[APP_ID].instructions["translate"].max_token == 50
    bad = dict(INSTRUCTION, name="i2", messages=[{"role": "user"}])
    assert_error(
        *await call(api, "POST", base, bad), 400, "messages[0]: exactly one of content and multi_content is required"
    )
    assert_error(*await call(api, "POST", base, dict(INSTRUCTION, name="i2", temperature=3)), 400, "temperature")
    status, doc = await call(api, "GET", base)
    assert [i["name"] for i in doc["data"]] == ["translate"]
    status, _ = await call(api, "DELETE", f"{base}/translate")
    assert status == 200 and api.services.snapshot.apps[APP_ID].instructions == {}

    assets = f"/apps/{APP_ID}/assets"
    status, doc = await call(api, "POST", assets, {"name": "gems", "initial_quantity": 5})
    assert status == 201 and doc["data"]["type"] == "consumable"
    assert api.services.snapshot.apps[APP_ID].assets["gems"].initial_quantity == 5
    status, doc = await call(api, "PATCH", f"{assets}/gems", {"recoverable": True, "recovery_quantity": 5})
    assert status == 200 and doc["data"]["initial_quantity"] == 5 and doc["data"]["recoverable"] is True
    assert_error(
        *await call(api, "PUT", f"{assets}/gems", {"name": "gems", "initial_quantity": -1}), 400, "initial_quantity"
    )
    # the strategy free-normal spends ai_credit: the policy cannot go
    assert_error(
        *await call(api, "DELETE", f"{assets}/ai_credit"), 409, f"apps[{APP_ID}].strategies[free-normal].cost.asset"
    )
    assert "ai_credit" in api.services.snapshot.apps[APP_ID].assets
    status, _ = await call(api, "DELETE", f"{assets}/gems")
    assert status == 200 and "gems" not in api.services.snapshot.apps[APP_ID].assets
    assert_error(*await call(api, "GET", f"{assets}/gems"), 404, "gems")


async def test_every_write_bumps_the_version(api):
    before = api.services.snapshot.version
    await call(api, "PATCH", f"/apps/{APP_ID}", {"name": "v2"})
    await call(api, "POST", "/models", {"name": "m1"})
    assert api.services.snapshot.version == before + 2
    # a refused write changes nothing
    await call(api, "DELETE", "/platforms/sim-openai")
    assert api.services.snapshot.version == before + 2
