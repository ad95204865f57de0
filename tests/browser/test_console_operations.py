"""The console's operating views driven in a real headless Chromium against a real aigate
(provider simulator, a webhook receiver on loopback): client trust, platform and key
health, webhook deliveries with Resend, open holds beside the ledger, and every field of
the strategy editor (cost forms, limits, fallbacks, request templates)."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
import pytest_asyncio
from aiohttp import web

from aigate.simulator.server import start_simulator
from tests.browser.conftest import admin_api, admin_state, shot, signin
from tests.gateway import APP_ID, base_config, start_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

GOOD_KEY = "sk-keys-good-0123456789"
REVOKED_KEY = "sk-keys-revoked-0123456789"
HOOK_SECRET = "whsec_" + base64.b64encode(b"console-webhook-secret-0123456789").decode()
IDP_SECRET = "an-hs256-issuer-secret-0123456789abcdef"
XSS = "<img src=x onerror=\"window.__pwned='img'\"><script>window.__pwned='script'</script>"


class Receiver:
    """A webhook endpoint that answers 500 while ``down``, then 204; records webhook-ids."""

    def __init__(self) -> None:
        self.down = True
        self.ok: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.down:
            return web.Response(status=500, text="receiver is down " + XSS)
        self.ok.append(request.headers["webhook-id"])
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]


def _config(db_url: str, sim_url: str, hook_url: str) -> dict:
    doc = base_config(db_url, sim_url)
    doc["platforms"].append(
        {
            "id": "sim-keys",
            "type": "openai",
            "base_url": f"{sim_url}/v1",
            "api_key": GOOD_KEY,
            "api_keys": [REVOKED_KEY],
            "models": ["gpt-4o-mini"],
        }
    )
    doc["health"] = {"probe_interval_s": 600}  # a disabled key stays out while the test looks
    doc["webhook_delivery"] = {"retry_delays_s": [0.2], "give_up_after_s": 1, "timeout_s": 5}
    app = doc["apps"][0]
    app["assets"][0]["low_quantity"] = 48
    app["webhooks"] = [{"url": hook_url, "events": ["asset.low"], "secret": HOOK_SECRET, "allow_private": True}]
    app["user_tokens"] = [
        {"issuer": "https://sb.example.com/auth/v1", "audience": "authenticated", "secret": IDP_SECRET}
    ]
    app["strategies"] += [
        {"name": "rotating", "model": "gpt-4o-mini", "platforms": ["sim-keys"]},
        {
            "name": "metered",
            "model": "gpt-4o-mini",
            "platforms": ["sim-openai"],
            "params": {"max_tokens": 500},
            "cost": {"asset": "ai_credit", "per_1k_input_tokens": 1, "per_1k_output_tokens": 2, "hold": 5},
        },
        {
            "name": "pictures",
            "module": "image",
            "model": "dall-e-3",
            "platforms": ["sim-openai"],
            "request": {"prompt": "{{ .prompt }}", "size": "1024x1024", "n": 1},
            "custom_response": {"image_urls": "data[].url"},
            "cost": {"asset": "ai_credit", "per_request": 5},
        },
    ]
    app["instructions"] = [
        {"name": "summary", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Sum up {{ .text }}."}]}
    ]
    return doc


class Env:
    def __init__(self, gw, sim, receiver):
        self.gw, self.url, self.sim, self.receiver = gw, gw.url, sim, receiver


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-ops")
    sim = await start_simulator(port=0)
    receiver = Receiver()
    hook_url = await receiver.start()
    gw = await start_gateway(_config(f"sqlite:///{tmp}/aigate.db", sim.url, hook_url))
    try:
        env = Env(gw, sim, receiver)
        env.admin_state = await admin_state(browser, env)
        yield env
    finally:
        await gw.close()
        await receiver.runner.cleanup()
        await sim.close()


async def chat(env, user: str, strategy: str, text: str = "hello", path: str = "/bp/ai/chat") -> int:
    async with env.gw.session.post(
        env.url + path,
        headers=env.gw.user_headers(user),
        json={
            "strategy": strategy,
            "parameters": {"example_string": "a teacher"},
            "messages": [{"role": "user", "content": text}],
        },
    ) as r:
        await r.read()
        return r.status


async def until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return found


async def test_health_shows_a_disabled_key_masked_beside_the_healthy_one(page, env):
    async with env.gw.session.post(env.sim.url + "/_sim/keys", json={REVOKED_KEY: {"status": 401}}) as r:
        assert r.status < 300

    async def disabled():
        assert await chat(env, "rotator", "rotating") == 200  # the good key serves every call
        health = (await admin_api(env, "GET", "/health/platforms"))["data"]
        keys = next(p for p in health if p["id"] == "sim-keys")["keys"]
        return any(k["state"] == "disabled" for k in keys)

    await until(disabled)
    await page.goto(env.url + "/console/dashboard")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Health", exact=True).click()
    group = page.locator("tbody[data-platform='sim-keys']")
    assert await group.locator(".platform-row .state").inner_text() == "up"
    revoked = group.locator(".key-row", has_text="sk-…6789").filter(has=page.locator(".state-disabled"))
    assert await revoked.count() == 1
    assert "401" in await revoked.inner_text()
    good = group.locator(".key-row", has=page.locator(".state-up"))
    assert await good.count() == 1
    content = await page.content()
    assert GOOD_KEY not in content and REVOKED_KEY not in content  # masked
    assert await page.locator("tbody[data-platform='sim-anthropic'] .platform-row .state").inner_text() == "up"
    # the good key answers 429 with Retry-After: it cools down alone, until a time shown
    async with env.gw.session.post(env.sim.url + "/_sim/keys", json={GOOD_KEY: {"status": 429, "retry_after": 120}}):
        pass
    await chat(env, "rotator", "rotating")
    await page.reload()
    cooling = group.locator(".key-row", has=page.locator(".state-cooldown"))
    assert await cooling.count() == 1
    assert "until 20" in await cooling.inner_text()
    await shot(page, "health")
    assert page.js_errors == []


async def test_a_failed_webhook_delivery_is_listed_and_resent(page, env):
    for _ in range(2):  # 50 -> 49 -> 48: the balance reaches low_quantity, asset.low is queued
        assert await chat(env, "lowbal", "free-normal") == 200

    async def failed():
        found = (await admin_api(env, "GET", "/webhooks/deliveries?status=failed"))["data"]["items"]
        return found

    (delivery,) = await until(failed)
    await page.goto(env.url + "/console/dashboard")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Webhooks", exact=True).click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**status=failed**")
    row = page.locator(f"#deliveries tr[data-msg='{delivery['msg_id']}']")
    text = await row.inner_text()
    assert "asset.low" in text and "failed" in text and "HTTP 500" in text
    assert f"\t{delivery['attempts']}\t" in text and delivery["attempts"] >= 1
    assert await page.inner_text("#deliveries-total") == "1"
    assert "receiver is down " + XSS in text  # the receiver's answer is shown as text, inert
    assert await page.evaluate("window.__pwned") is None and await page.locator("main img").count() == 0
    await shot(page, "webhooks")
    env.receiver.down = False
    async with page.expect_navigation():  # reloaded once the Admin API accepted it
        await row.get_by_role("button", name="Resend").click()
    assert page.dialogs and page.dialogs[-1].startswith(f"Send delivery {delivery['msg_id']}")

    async def delivered():
        found = (await admin_api(env, "GET", "/webhooks/deliveries?status=delivered"))["data"]["items"]
        return [d for d in found if d["msg_id"] == delivery["msg_id"]]

    await until(delivered)
    assert env.receiver.ok == [delivery["msg_id"]]  # the same webhook-id, delivered once
    await page.goto(env.url + "/console/webhooks?status=delivered")
    assert "delivered" in await page.locator(f"#deliveries tr[data-msg='{delivery['msg_id']}']").inner_text()


async def test_webhook_endpoints_are_edited_with_their_secrets_masked(page, env):
    await page.goto(env.url + "/console/webhooks")
    await page.get_by_label("App").select_option(APP_ID)
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(f"**app={APP_ID}**")
    first = page.locator("#wh0")
    shown = await first.get_by_label("Signing secret").input_value()
    assert shown == HOOK_SECRET[:3] + "…" + HOOK_SECRET[-4:] and HOOK_SECRET not in await page.content()
    new = page.locator("#wh-new")
    secret = await new.get_by_label("Signing secret").input_value()  # offered for the new endpoint
    assert secret.startswith("whsec_")
    await new.get_by_label("URL").fill("http://127.0.0.1:9/other")
    await new.get_by_label("Events").fill("platform.down, platform.up")
    await new.get_by_role("button", name="Add endpoint").click()
    await new.locator(".form-error:not(:empty)").wait_for()
    assert "allow_private" in await new.locator(".form-error").inner_text()  # a private address
    await new.get_by_label("Allow a private or loopback address").check()
    await saved_and_reloaded(page, new.get_by_role("button", name="Add endpoint"))
    endpoints = (await admin_api(env, "GET", f"/apps/{APP_ID}/webhooks"))["data"]
    assert [(e["url"], e["events"]) for e in endpoints] == [
        (endpoints[0]["url"], ["asset.low"]),
        ("http://127.0.0.1:9/other", ["platform.down", "platform.up"]),
    ]
    assert endpoints[0]["secret"] == shown  # the first one's secret kept, still masked
    await shot(page, "webhook-endpoints")
    async with page.expect_navigation():
        await page.locator("#wh1").get_by_role("button", name="Remove").click()
    assert len((await admin_api(env, "GET", f"/apps/{APP_ID}/webhooks"))["data"]) == 1
    assert page.js_errors == []


async def test_open_holds_are_shown_beside_the_ledger(page, env):
    # a usage-based call held open by a slow upstream: its hold is visible while it runs
    # (a stream of 8 deltas 1 s apart: the upstream answers at once, so no first-byte timeout)
    call = asyncio.ensure_future(
        chat(env, "holder", "metered", "[[sim chunk_interval_ms=1000]] hi", path="/bp/ai/chat/stream")
    )

    async def held():
        user = (await admin_api(env, "GET", f"/apps/{APP_ID}/users/holder"))["data"]  # None until it exists
        return user and user["holds"]

    (hold,) = await until(held)
    await page.goto(env.url + f"/console/users?app={APP_ID}&user=holder")
    row = page.locator("#holds tbody tr").first
    text = await row.inner_text()
    assert hold["request_id"] in text and "ai_credit" in text and "\t5\t" in text
    assert hold["holder"] in text and hold["lease_until"] in text
    assert await page.inner_text("[data-held='ai_credit']") == "5"
    await shot(page, "users-holds")
    assert await call == 200
    await page.reload()
    assert await page.inner_text("#holds tbody") == "No open holds."
    kinds = await page.locator("#ledger tbody tr td:nth-child(5)").all_inner_texts()
    assert kinds[:2] == ["settle", "reserve"]
    settle = page.locator("#ledger tbody tr").first
    charge = await settle.locator("td:nth-child(6)").inner_text()
    assert charge and int(charge) >= 1  # the actual charge, rounded up to whole credits


async def test_client_trust_is_shown_and_edited_with_errors_beside_the_fields(page, env):
    from tests.idp import claims, hs256_with

    await page.goto(env.url + "/console/dashboard")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Clients", exact=True).click()
    assert await page.get_by_label("Or an HS256 secret").first.input_value() == "an-…cdef"
    assert IDP_SECRET not in await page.content()
    # CORS: a bad origin is named beside the field, a good one is served to a browser's preflight
    cors = page.locator("#cors-form")
    await cors.get_by_label("Allowed origins").fill("https://app.example.com, https://*.example.com")
    save = cors.get_by_role("button", name="Save origins")
    assert (await error_beside(page, save, "cors-origins")).startswith("cors.origins")
    await cors.get_by_label("Allowed origins").fill("https://app.example.com")
    await saved_and_reloaded(page, cors.get_by_role("button", name="Save origins"))
    assert await page.locator("#cors-origins").input_value() == "https://app.example.com"
    async with env.gw.session.options(
        env.url + "/bp/ai/chat",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    ) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    # edge limits
    limits = page.locator("#limits-form")
    await limits.get_by_label("Requests per minute per user").fill("0")
    save = limits.get_by_role("button", name="Save limits")
    assert "rate_limits.per_user_rpm" in await error_beside(page, save, "rl-user")
    await limits.get_by_label("Requests per minute per user").fill("30")
    await limits.get_by_label("Open streams per user").fill("2")
    await saved_and_reloaded(page, limits.get_by_role("button", name="Save limits"))
    assert await page.locator("#rl-user").input_value() == "30"
    client = (await admin_api(env, "GET", f"/apps/{APP_ID}"))["data"]["client"]
    assert client["rate_limits"] == {"per_user_rpm": 30, "per_ip_rpm": None, "max_concurrent_streams_per_user": 2}
    # an identity provider edited with its secret masked keeps verifying with the stored secret
    idp = page.locator("#idp0")
    await idp.get_by_label("User prefix").fill("sb:")
    await saved_and_reloaded(page, idp.get_by_role("button", name="Save provider"))
    assert await page.locator("#idp0-prefix").input_value() == "sb:"
    token = hs256_with(IDP_SECRET.encode(), claims("https://sb.example.com/auth/v1", "authenticated", sub="kim"))
    async with env.gw.session.get(env.url + "/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    # a new provider: the API's refusal shown, then saved
    new = page.locator("#idp-new")
    await new.get_by_label("Issuer (iss)").fill("https://idp.example.com")
    await new.get_by_label("Audience (aud)").fill("my-app")
    await new.get_by_label("JWKS URL").fill("http://idp.example.com/jwks.json")
    await new.get_by_role("button", name="Add provider").click()
    await new.locator(".form-error:not(:empty), .field-error").first.wait_for()
    assert "https://" in await new.inner_text()
    # a key set on a private address is refused until the operator allows it
    await new.get_by_label("JWKS URL").fill("https://10.0.0.5/.well-known/jwks.json")
    await new.get_by_role("button", name="Add provider").click()
    await new.locator(".form-error, .field-error").filter(has_text="allow_private").first.wait_for()
    await new.get_by_label("Allow a key set on a private or loopback address").check()
    await new.get_by_label("User prefix").fill("idp:")
    await new.get_by_label("Required claims").fill('{"email_verified": true}')
    await saved_and_reloaded(page, new.get_by_role("button", name="Add provider"))
    assert await page.locator("#idp1").count() == 1
    issuers = (await admin_api(env, "GET", f"/apps/{APP_ID}"))["data"]["client"]["user_tokens"]
    assert [(i["issuer"], i["user_prefix"]) for i in issuers] == [
        ("https://sb.example.com/auth/v1", "sb:"),
        ("https://idp.example.com", "idp:"),
    ]
    assert issuers[1]["required_claims"] == {"email_verified": True}
    assert issuers[1]["allow_private"] is True and issuers[1]["jwks_url"] == "https://10.0.0.5/.well-known/jwks.json"
    assert await page.locator("#idp1").get_by_label("Allow a key set on a private or loopback address").is_checked()
    # attestation in monitor mode
    att = page.locator("#att-form")
    assert await page.inner_text("#att-mode") == "off"
    await att.get_by_label("Attestation").select_option("monitor")
    await att.get_by_label("Issuer (iss)").fill("https://firebaseappcheck.googleapis.com/123")
    await att.get_by_label("Audience (aud)").fill("projects/123")
    await att.get_by_label("JWKS URL").fill("https://firebaseappcheck.googleapis.com/v1/jwks")
    await saved_and_reloaded(page, att.get_by_role("button", name="Save attestation"))
    assert (await page.inner_text("#att-mode")).startswith("monitor only")
    attestation = (await admin_api(env, "GET", f"/apps/{APP_ID}"))["data"]["client"]["attestation"]
    assert attestation["required"] is False and attestation["monitor"] is True
    assert attestation["header"] == "X-Firebase-AppCheck"
    await shot(page, "clients")
    assert page.js_errors == []


async def test_strategy_editor_covers_cost_forms_limits_fallbacks_and_request_templates(page, env):
    await page.goto(env.url + f"/console/strategies?app={APP_ID}")
    assert await page.inner_text("[data-cost='metered']") == "1 in / 2 out ai_credit per 1k tokens (hold 5)"
    assert await page.inner_text("[data-cost='pictures']") == "5 ai_credit per request"
    await page.get_by_role("link", name="metered").click()
    assert await page.get_by_label("Charge").input_value() == "tokens"
    assert await page.get_by_label("Per 1,000 input tokens").input_value() == "1"
    assert await page.get_by_label("Per 1,000 output tokens").input_value() == "2"
    assert await page.get_by_label("Hold reserved before the call").input_value() == "5"
    assert not await page.get_by_label("Per unit of used amount").is_visible()
    await shot(page, "strategy-cost")
    save = page.get_by_role("button", name="Save")
    # a fixed amount with no amount: the API's message beside the Charge field
    await page.get_by_label("Charge").select_option("per_request")
    assert not await page.get_by_label("Per 1,000 input tokens").is_visible()
    assert "per_request" in await error_beside(page, save, "f-cost")
    await page.get_by_label("Per request").fill("3")
    # a limit with a bad count: named beside the count
    await page.get_by_label("Requests per user").select_option("limited")
    await page.get_by_label("Count").fill("0")
    assert "limit.count" in await error_beside(page, save, "f-limit-count")
    await page.get_by_label("Count").fill("5")
    await page.get_by_label("Period").select_option("hour")
    await page.get_by_label("Fallback models").fill("claude-3-5-haiku")
    await saved_and_listed(page)
    spec = (await admin_api(env, "GET", f"/apps/{APP_ID}/strategies/metered"))["data"]
    assert given(spec["cost"]) == {"asset": "ai_credit", "per_request": 3}
    assert spec["limit"] == {"count": 5, "period": "hour"}
    assert spec["fallback_models"] == ["claude-3-5-haiku"]
    # the App API charges what the editor saved
    before = await _balance(env, "payer")
    assert await chat(env, "payer", "metered") == 200
    assert await _balance(env, "payer") == before - 3
    # per used amount, with a hold
    await page.goto(env.url + f"/console/strategies/{APP_ID}/strategy/metered")
    await page.get_by_label("Charge").select_option("used_amount")
    await page.get_by_label("Per unit of used amount").fill("0.5")
    await page.get_by_label("Hold reserved before the call").fill("4")
    await saved_and_listed(page)
    spec = (await admin_api(env, "GET", f"/apps/{APP_ID}/strategies/metered"))["data"]
    assert given(spec["cost"]) == {"asset": "ai_credit", "per_used_amount": 0.5, "hold": 4}
    assert await page.inner_text("[data-cost='metered']") == "0.5 ai_credit per unit used (hold 4)"
    # free again
    await page.goto(env.url + f"/console/strategies/{APP_ID}/strategy/metered")
    await page.get_by_label("Charge").select_option("none")
    await page.get_by_label("Requests per user").select_option("none")
    await saved_and_listed(page)
    spec = (await admin_api(env, "GET", f"/apps/{APP_ID}/strategies/metered"))["data"]
    assert spec["cost"] is None and spec["limit"] is None
    assert page.js_errors == []


async def test_an_instruction_takes_the_same_cost_forms_and_limit(page, env):
    await page.goto(env.url + f"/console/strategies/{APP_ID}/instruction/summary")
    assert await page.get_by_label("Charge").input_value() == "none"
    await page.get_by_label("Charge").select_option("tokens")
    await page.get_by_label("Per 1,000 input tokens").fill("0.25")
    await page.get_by_label("Per 1,000 output tokens").fill("x")
    save = page.get_by_role("button", name="Save")
    assert "cost.per_1k_output_tokens" in await error_beside(page, save, "f-cost-out")
    await page.get_by_label("Per 1,000 output tokens").fill("1")
    await page.get_by_label("Requests per user").select_option("limited")
    await page.get_by_label("Count").fill("10")
    await saved_and_listed(page)
    spec = (await admin_api(env, "GET", f"/apps/{APP_ID}/instructions/summary"))["data"]
    assert given(spec["cost"]) == {"asset": "ai_credit", "per_1k_input_tokens": 0.25, "per_1k_output_tokens": 1}
    assert spec["limit"] == {"count": 10, "period": "day"}
    row = page.locator("tr", has=page.get_by_role("link", name="summary"))
    assert "0.25 in / 1 out ai_credit per 1k tokens" in await row.inner_text()
    assert "10 / day" in await row.inner_text()


async def test_the_new_pages_fit_a_phone_screen(page, env):
    await page.set_viewport_size({"width": 390, "height": 844})
    for path in (
        "/console/clients",
        "/console/health",
        f"/console/webhooks?app={APP_ID}",
        "/console/users?user=holder",
    ):
        await page.goto(env.url + path)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path
    assert page.js_errors == []


async def test_a_request_template_is_previewed_and_saved(page, env):
    await page.goto(env.url + f"/console/strategies/{APP_ID}/strategy/pictures")
    template = page.get_by_label("Request template")
    assert '"prompt": "{{ .prompt }}"' in await template.input_value()
    error = page.locator("#preview-error")
    await error.filter(has_text="parameters.prompt").wait_for()  # the sample has no prompt
    await page.get_by_label("Sample parameters (JSON)").fill('{"prompt": "a lighthouse"}')
    await page.wait_for_selector('#preview-output:has-text(\'"prompt": "a lighthouse"\')')
    await template.fill('{"prompt": "{{ .prompt }}", "size": ')
    save = page.get_by_role("button", name="Save")
    assert "request: not valid JSON" in await error_beside(page, save, "f-request")
    await template.fill('{"prompt": "{{ .prompt }} at dusk", "size": "512x512", "n": 1}')
    await page.get_by_label("Custom response").fill('{"urls": "data[].url"}')
    await saved_and_listed(page)
    spec = (await admin_api(env, "GET", f"/apps/{APP_ID}/strategies/pictures"))["data"]
    assert spec["request"] == {"prompt": "{{ .prompt }} at dusk", "size": "512x512", "n": 1}
    assert spec["custom_response"] == {"urls": "data[].url"}
    await page.goto(env.url + f"/console/strategies/{APP_ID}/strategy/pictures")
    assert not await page.get_by_label("System prompt (Go template)").is_visible()  # chat only
    await page.get_by_label("Sample parameters (JSON)").fill('{"prompt": "a lighthouse"}')
    await page.wait_for_selector('#preview-output:has-text("a lighthouse at dusk")')
    await shot(page, "strategy-request")


async def test_a_viewer_sees_the_new_views_without_write_controls(page, env):
    await admin_api(env, "POST", "/operators", {"name": "viewer2", "password": "viewer-pass-123", "role": "viewer"})
    await page.context.clear_cookies()
    await signin(page, env, username="viewer2", password="viewer-pass-123")
    await page.goto(env.url + "/console/clients")
    assert await page.locator("main button").count() == 0
    assert await page.get_by_label("Allowed origins").is_disabled()
    assert await page.locator("#idp-new").count() == 0
    await page.goto(env.url + "/console/webhooks")
    assert await page.locator("#deliveries tbody tr[data-msg]").count() >= 1
    assert await page.get_by_role("button", name="Resend").count() == 0
    await page.goto(env.url + f"/console/strategies/{APP_ID}/strategy/pictures")
    assert await page.get_by_label("Charge").is_disabled()
    await page.goto(env.url + "/console/health")
    assert await page.locator("tbody[data-platform='sim-keys']").count() == 1
    status = await page.evaluate(
        """async (id) => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch(`/api/webhooks/deliveries/${id}/resend`, {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: '{}'});
        return r.status; }""",
        "whatever",
    )
    assert status == 403


async def error_beside(page, button, field_id: str) -> str:
    """Click a Save button; the Admin API's refusal as shown beside the field it names."""
    await button.click()
    error = page.locator(f"#{field_id} + .field-error")
    await error.wait_for()
    return await error.inner_text()


def given(cost: dict) -> dict:
    return {k: v for k, v in cost.items() if v is not None}


async def saved_and_listed(page) -> None:
    """Save a strategy: the editor goes back to the list once the Admin API accepted it."""
    async with page.expect_navigation(url=f"**/console/strategies?app={APP_ID}"):
        await page.get_by_role("button", name="Save").click()


async def saved_and_reloaded(page, button) -> None:
    """Click a Save button whose form reloads the page once the Admin API accepted it."""
    async with page.expect_navigation():
        await button.click()


async def _balance(env, user: str) -> int:
    async with env.gw.session.get(env.url + "/bp/ai/assets", headers=env.gw.user_headers(user)) as r:
        doc = await r.json()
    return next(a["quantity"] for a in doc["asset"] if a["name"] == "ai_credit")
