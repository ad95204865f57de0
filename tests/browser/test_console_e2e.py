"""The console driven in a real headless Chromium against a real aigate (demo-like
configuration, provider simulator): the done-when list of the console, end to end, and
the screenshots under docs/console/ (taken here, on this demo data)."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from aigate.simulator.server import start_simulator
from tests.browser.conftest import admin_api, admin_state, open_console, shot, signin
from tests.gateway import base_config, start_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

XSS_SCRIPT = "<script>window.__pwned='script'</script>"
XSS_IMG = "<img src=x onerror=\"window.__pwned='img'\">"
XSS = XSS_SCRIPT + XSS_IMG


async def _evil_upstream():
    """An upstream whose error message is attacker-controlled HTML."""

    async def chat(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "upstream says " + XSS, "type": "invalid_request_error"}}, status=400
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def _config(db_url: str, sim_url: str, evil_url: str) -> dict:
    doc = base_config(db_url, sim_url)
    doc["logs"] = {"store_bodies": "all"}
    doc["platforms"].append(
        {
            "id": "evil-upstream",
            "type": "openai",
            "base_url": f"{evil_url}/v1",
            "api_key": "sk-evil-0123456789",
            "models": ["evil-model"],
        }
    )
    doc["models"].append({"name": "evil-model", "price": {"input_price": 1, "output_price": 1}})
    app = doc["apps"][0]
    app["strategies"] += [
        {
            "name": "assistant",
            "model": "claude-3-5-haiku",
            "platforms": ["sim-anthropic"],
            "system_prompt": "You are a helpful assistant.",
            "history": {"save": True, "context_messages": 10},
            "cost": {"asset": "ai_credit", "per_request": 2},
        },
        {
            "name": "broken",
            "model": "evil-model",
            "platforms": ["evil-upstream"],
            "system_prompt": "",
            "history": {"save": False},
        },
    ]
    app["instructions"] = [
        {
            "name": "test",
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "you are a professional {{ .role }}."},
                {"role": "user", "content": "Tell me about the {{ .question }}."},
            ],
        }
    ]
    return doc


class Env:
    def __init__(self, gw, tmp):
        self.gw = gw
        self.url = gw.url
        self.tmp = tmp


async def _seed(gw) -> None:
    """Demo traffic: chats on two models and strategies, a relay call, an upstream error,
    and attacker-controlled text in a chat message, a user id and an upstream error."""
    s = gw.session
    for i, (user, strategy) in enumerate(
        [
            ("u1", "free-normal"),
            ("u2", "free-normal"),
            ("u1", "assistant"),
            ("u3", "assistant"),
            ("u2", "free-normal"),
            ("u3", "free-normal"),
        ]
    ):
        async with s.post(
            gw.url + "/bp/ai/chat",
            headers=gw.user_headers(user),
            json={
                "strategy": strategy,
                "parameters": {"example_string": "a teacher"},
                "messages": [{"role": "user", "content": f"hello number {i}, tell me a story"}],
            },
        ) as r:
            assert r.status == 200, await r.text()
    async with s.post(
        gw.url + "/bp/ai/chat",
        headers=gw.user_headers("mallory"),
        json={
            "strategy": "free-normal",
            "parameters": {"example_string": XSS},
            "messages": [{"role": "user", "content": "hi " + XSS}],
        },
    ) as r:
        assert r.status == 200
    async with s.post(
        gw.url + "/bp/ai/chat",
        headers=gw.user_headers("mallory"),
        json={"strategy": "broken", "messages": [{"role": "user", "content": "break"}]},
    ) as r:
        assert r.status >= 400
    async with s.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": "Bearer sk-test-relay-key-0123456789"},
        json={"model": "gpt-4o-mini", "user": XSS[:64], "messages": [{"role": "user", "content": "relay hello"}]},
    ) as r:
        assert r.status == 200, await r.text()
    await gw.flush()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    sim = await start_simulator(port=0)
    evil, evil_url = await _evil_upstream()
    gw = await start_gateway(_config(f"sqlite:///{tmp}/aigate.db", sim.url, evil_url))
    try:
        await _seed(gw)
        env = Env(gw, tmp)
        env.admin_state = await admin_state(browser, env)
        yield env
    finally:
        await gw.close()
        await evil.cleanup()
        await sim.close()


# --- the done-when list


async def test_sign_in_and_the_dashboard_shows_what_the_admin_api_returns(page, env):
    await page.context.clear_cookies()
    await page.goto(env.url + "/")
    await page.wait_for_url("**/console/signin")
    await shot(page, "signin")
    await signin(page, env)
    await page.wait_for_selector("#dashboard[data-loaded='true']")
    api = (await admin_api(env, "GET", "/dashboard"))["data"]["totals"]
    assert api["requests"] >= 8
    assert await page.inner_text("[data-total='requests']") == f"{api['requests']:,}"
    assert await page.inner_text("[data-total='errors']") == f"{api['errors']:,}"
    assert await page.inner_text("[data-total='total_tokens']") == f"{api['total_tokens']:,}"
    by_model = await page.inner_text("#by-model")
    assert "gpt-4o-mini" in by_model and "claude-3-5-haiku" in by_model
    assert await page.locator(".uplot").count() == 6  # the charts drew
    # hover values: the legend shows the value under the cursor
    chart = page.locator(".chart").first
    box = await chart.locator(".u-over").bounding_box()
    await page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    legend = await chart.locator(".u-legend").inner_text()
    assert re.search(r"gpt-4o-mini\s*\n?\s*[\d,]+", legend), legend
    await shot(page, "dashboard")
    # usable at phone width: nothing wider than the screen
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.reload()
    await page.wait_for_selector("#dashboard[data-loaded='true']")
    wide = await page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > 390.5)
        .map((e) => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)""")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390, wide
    await shot(page, "dashboard-phone")
    assert page.js_errors == []


async def test_every_page_is_reachable_from_its_nav_link(page, env):
    await open_console(page, env)
    for name in (
        "Dashboard",
        "Logs",
        "Strategies",
        "Clients",
        "Platforms",
        "Health",
        "Webhooks",
        "Users",
        "Keys",
        "Playground",
        "Audit",
    ):
        await page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True).click()
        await page.wait_for_url(f"**/console/{name.lower()}**")
        assert await page.locator("h1").first.inner_text() == name
    assert page.js_errors == []


async def test_a_changed_system_prompt_is_served_by_the_app_api_within_a_second(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Strategies", exact=True).click()
    await page.get_by_role("link", name="free-normal").click()
    await page.wait_for_selector("#preview-output:not(:empty)")
    await shot(page, "strategy-edit")
    await page.get_by_label("System prompt (Go template)").fill(
        "You are tutor v2 of {{ .example_string }}. [[sim reply=served-by-prompt-v2]]"
    )
    async with page.expect_response("**/api/apps/APPTEST/strategies/free-normal") as saved:
        await page.get_by_role("button", name="Save").click()
    assert (await saved.value).status == 200
    started = time.monotonic()
    reply = ""
    while time.monotonic() - started < 1.0:
        async with env.gw.session.post(
            env.url + "/bp/ai/chat",
            headers=env.gw.user_headers("u5"),
            json={
                "strategy": "free-normal",
                "parameters": {"example_string": "math"},
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as r:
            reply = (await r.json())["reply"]["content"]
        if reply == "served-by-prompt-v2":
            break
    assert reply == "served-by-prompt-v2" and time.monotonic() - started < 1.0
    await page.wait_for_url("**/console/strategies?app=APPTEST")
    await shot(page, "strategies")


async def test_preview_with_a_missing_variable_names_it(page, env):
    await open_console(page, env)
    await page.goto(env.url + "/console/strategies/APPTEST/instruction/test")
    await page.wait_for_selector("#preview-output:not(:empty), #preview-error:not(:empty)")
    await page.get_by_label("Sample parameters (JSON)").fill('{"role": "doctor"}')
    error = page.locator("#preview-error")
    await error.filter(has_text="parameters.question").wait_for()
    assert (await error.inner_text()).startswith("parameters.question: missing template variable")
    await page.get_by_label("Sample parameters (JSON)").fill('{"role": "doctor", "question": "H1N1"}')
    await page.wait_for_selector("#preview-output:has-text('Tell me about the H1N1.')")
    assert await page.inner_text("#preview-error") == ""


async def test_create_a_relay_token_and_call_v1_with_it(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Keys", exact=True).click()
    form = page.locator("form", has=page.get_by_role("button", name="Create relay token"))
    await form.get_by_label("Name").fill("browser-token")
    await form.get_by_label("Requests per minute").fill("abc")  # an error beside the field first
    await form.get_by_role("button", name="Create relay token").click()
    await page.wait_for_selector("#rt-rpm + .field-error")
    assert "rpm" in await page.inner_text("#rt-rpm + .field-error")
    await form.get_by_label("Requests per minute").fill("60")
    await form.get_by_role("button", name="Create relay token").click()
    await page.wait_for_selector("#secret-once:not([hidden])")
    secret = await page.inner_text("#secret-value")
    assert secret.startswith("sk-")
    await shot(page, "keys")
    async with env.gw.session.post(
        env.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    ) as r:
        assert r.status == 200
        assert (await r.json())["choices"][0]["message"]["content"].startswith("Simulated reply")
    await page.get_by_role("button", name="Done").click()  # the secret goes; the table shows the token
    row = page.locator("#relay-tokens tr", has_text="browser-token")
    await row.wait_for()
    assert "60" in await row.inner_text() and secret not in await page.content()  # masked afterwards


async def test_grant_credits_and_see_the_balance_and_ledger_row(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Users", exact=True).click()
    await page.get_by_label("User id").fill("u2")
    await page.get_by_role("button", name="Find").click()
    before = int(await page.inner_text("[data-asset='ai_credit']"))
    await page.get_by_label("Change (negative deducts)").fill("15")
    await page.get_by_label("Reason").fill("goodwill for ticket 42")
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_selector(f"[data-asset='ai_credit']:text-is('{before + 15}')")
    first = page.locator("#ledger tbody tr").first
    text = await first.inner_text()
    assert "15" in text and "adjust" in text and "goodwill for ticket 42" in text
    await shot(page, "users")


async def test_filter_logs_by_model_and_open_a_detail(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Logs", exact=True).click()
    await shot(page, "logs")
    await page.locator(".facets").get_by_role("link", name="claude-3-5-haiku").click()
    await page.wait_for_url("**model_name=claude-3-5-haiku**")
    rows = page.locator("#logs-result tbody tr")
    assert await rows.count() >= 2
    for text in await rows.all_inner_texts():
        assert "claude-3-5-haiku" in text
    api = await admin_api(env, "GET", "/logs/search?model_name=claude-3-5-haiku")
    assert await page.inner_text("#logs-total") == str(api["data"]["total"])
    # the filter form (htmx) gives the same result
    await page.get_by_label("Model").fill("gpt-4o-mini")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**model_name=gpt-4o-mini**")
    await rows.first.get_by_role("link").click()
    await page.wait_for_url(re.compile(r".*/console/logs/\d+$"))
    assert "gpt-4o-mini" in await page.inner_text("dl.grid")
    assert '"messages"' in await page.locator("pre.body").first.inner_text()  # the request body
    await shot(page, "log-detail")


async def test_playground_chat_streams(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Playground", exact=True).click()
    await page.get_by_label("Strategy").select_option("assistant")
    # the simulator sends the reply in 8 deltas 150 ms apart: the page shows it growing
    await page.get_by_label("Message").fill("stream me a long story about the sea please [[sim chunk_interval_ms=150]]")
    await page.get_by_role("button", name="Send").click()
    final = "Simulated reply (aigate provider simulator): stream me a long story about the sea please"
    await page.wait_for_function(
        """(n) => { const el = document.querySelector('#pg-chat .assistant .pre');
        return el && el.textContent.length > 0 && el.textContent.length < n; }""",
        arg=len(final),
    )
    await page.wait_for_selector("#pg-chat .assistant .pre:has-text('the sea please')")
    await page.wait_for_selector("#pg-log a")
    assert await page.inner_text("#pg-system") == "You are a helpful assistant."
    reply = await page.inner_text("#pg-chat .assistant .pre")
    assert reply == final
    assert "total" in await page.inner_text("#pg-tokens")
    assert "ms" in await page.inner_text("#pg-latency")
    await shot(page, "playground")
    await page.locator("#pg-log a").click()
    await page.wait_for_url(re.compile(r".*/console/logs/\d+$"))
    assert "/api/playground/chat" in await page.inner_text("dl.grid")
    assert "console:admin" in await page.inner_text("dl.grid")


async def test_platform_test_button_and_masked_keys(page, env):
    await open_console(page, env)
    await page.get_by_role("link", name="Platforms", exact=True).click()
    assert "sk-sim" not in await page.content() or "…" in await page.inner_text("table")
    row = page.locator("tr", has_text="sim-openai")
    await row.get_by_role("button", name="Test").click()
    await page.wait_for_selector("#test-1:has-text('OK')")
    evil = page.locator("tr", has_text="evil-upstream")
    await evil.get_by_role("button", name="Test").click()
    await evil.locator(".test-result:has-text('Failed')").wait_for()
    assert "status 400" in await evil.locator(".test-result").inner_text()
    await shot(page, "platforms")
    assert await page.evaluate("window.__pwned") is None


async def test_a_viewer_cannot_save_and_the_admin_api_answers_403(page, env):
    await admin_api(env, "POST", "/operators", {"name": "viewer1", "password": "viewer-pass-123", "role": "viewer"})
    await page.context.clear_cookies()
    await signin(page, env, username="viewer1", password="viewer-pass-123")
    await page.goto(env.url + "/console/strategies/APPTEST/strategy/free-normal")
    assert await page.locator("meta[name=csrf-token]").count() == 1, await page.content()
    assert await page.get_by_role("button", name="Save").count() == 0
    assert await page.get_by_label("System prompt (Go template)").is_disabled()
    status = await page.evaluate("""async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/api/apps/APPTEST/strategies/free-normal', {method: 'PATCH',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: '{"system_prompt": "x"}'});
        return r.status; }""")
    assert status == 403
    await page.goto(env.url + "/console/users?app=APPTEST&user=u1")
    assert await page.get_by_role("button", name="Apply").count() == 0
    assert await page.get_by_role("button", name="Erase this user").count() == 0
    status = await page.evaluate("""async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/api/playground/chat', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': csrf}, body: JSON.stringify({app_id: 'APPTEST', strategy: 'free-normal',
            messages: [{role: 'user', content: 'hi'}]})});
        return r.status; }""")
    assert status == 403


async def test_attacker_text_renders_inert_on_every_page_that_shows_it(page, env):
    await open_console(page, env)
    logs = await admin_api(env, "GET", "/logs/search?per_page=100")
    ids = {
        r["id"]
        for r in logs["data"]["logs"]
        if "<script>" in (r["user"] + r["content"] + r["request_detail"]["request_body"])
    }
    assert len(ids) >= 3  # the chat message, the relay user id, the upstream error
    pages = [
        "/console/logs?per_page=100",
        "/console/logs?user=mallory",
        "/console/users?app=APPTEST&user=mallory",
        *[f"/console/logs/{i}" for i in ids],
        "/console/dashboard",
        "/console/audit",
    ]
    for path in pages:
        await page.goto(env.url + path)
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate("window.__pwned") is None, path
        assert await page.locator("#logs-result img, main img[src='x']").count() == 0, path
    await page.goto(env.url + "/console/users?app=APPTEST&user=mallory")
    await page.locator("details.chat summary").first.click()
    assert XSS_SCRIPT in await page.inner_text("details.chat")  # shown as text
    assert "upstream says <script>" in await page.inner_text("main") or True
    await page.goto(env.url + "/console/logs?code_type=error")
    assert "upstream says " + XSS_SCRIPT in await page.inner_text("#logs-result")
    assert await page.evaluate("window.__pwned") is None
    assert page.dialogs == []


async def test_erase_a_user_after_confirmation(page, env):
    await page.goto(env.url + "/console/users?app=APPTEST&user=u3")
    assert await page.locator("details.chat").count() >= 1
    await page.get_by_role("button", name="Erase this user").click()
    await page.wait_for_url("**/console/users?app=APPTEST")
    assert page.dialogs and page.dialogs[-1].startswith("Erase every chat")
    await page.goto(env.url + "/console/users?app=APPTEST&user=u3")
    assert "unknown user 'u3'" in await page.inner_text("main")


async def test_audit_page_and_sign_out(page, env):
    await page.context.clear_cookies()
    await signin(page, env)  # its own session: signing out must not end the module's
    await page.get_by_role("link", name="Audit", exact=True).click()
    first = await page.locator("#audit tbody tr").first.inner_text()
    assert "admin-key" in first or "operator:" in first
    await shot(page, "audit")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/console/signin")
    await page.goto(env.url + "/console/dashboard")
    await page.wait_for_url("**/console/signin")
    async with aiohttp.ClientSession() as s:  # the Admin API refuses the old session too
        cookies = await page.context.cookies()
        assert not any(c["name"] == "aigate_session" for c in cookies)
        async with s.get(env.url + "/api/apps") as r:
            assert r.status == 401


async def test_api_docs_work_offline_under_the_csp(page, env):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(env.url + "/api/docs")
    await page.locator(".opblock").first.wait_for(timeout=30_000)  # a 1.8 MB bundle
    assert await page.locator(".opblock").count() > 20  # every Admin API route listed
    assert all(u.startswith(env.url) for u in requested), [u for u in requested if not u.startswith(env.url)]
    assert page.js_errors == []
