"""A real headless Chromium calls the App API from a page of another origin (SPEC §10):
``fetch`` of ``/bp/ai/chat`` and a read of ``/bp/ai/chat/stream`` work from a listed
origin, and the browser itself refuses the same calls from an origin no app lists."""

from __future__ import annotations

import os
import shutil

import pytest
from aiohttp import web

from tests.gateway import base_config, start_gateway

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>aigate CORS check</title></head>
<body><h1>aigate from another origin</h1><pre id="out">waiting</pre>
<script>
async function callAigate(base, token) {
  const out = {};
  const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
  const body = JSON.stringify({strategy: "free-normal", parameters: {example_string: "a browser"},
                               messages: [{role: "user", content: "hello from the page"}]});
  try {
    const resp = await fetch(base + "/bp/ai/chat", {method: "POST", headers, body});
    const data = await resp.json();
    out.chat = {status: resp.status, reply: data.reply && data.reply.content};
  } catch (e) { out.chat = {error: String(e)}; }
  try {
    // deltas 60 ms apart: the page must see them arrive in several reads
    const slow = body.replace("hello from the page", "[[sim chunk_interval_ms=60]] hello from the page");
    const resp = await fetch(base + "/bp/ai/chat/stream", {method: "POST", headers, body: slow});
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let text = "", reads = 0;
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      reads += 1;
      text += decoder.decode(value, {stream: true});
    }
    const events = text.split("\\n").filter(l => l.startsWith("data: ")).map(l => JSON.parse(l.slice(6)));
    out.stream = {status: resp.status, reads, events: events.length,
                  content: events.map(e => e.content || "").join(""),
                  finished: events.some(e => e.is_finish)};
  } catch (e) { out.stream = {error: String(e)}; }
  document.getElementById("out").textContent = JSON.stringify(out, null, 2);
  return out;
}
</script></body></html>"""


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM)


@pytest.fixture
def need_browser():
    if not _browser_available():
        reason = f"Chromium ({CHROMIUM}) or the playwright package is missing"
        if os.environ.get("AIGATE_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
async def page_server():
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_a_page_of_a_listed_origin_chats_and_streams(need_browser, tmp_path, simulator, page_server):
    from playwright.async_api import async_playwright

    listed = f"http://127.0.0.1:{page_server}"
    unlisted = f"http://localhost:{page_server}"  # same server, another origin
    doc = base_config(f"sqlite:///{tmp_path}/b.db", simulator.url)
    doc["apps"][0]["cors"] = {"origins": [listed]}
    gw = await start_gateway(doc)
    try:
        token = gw.user_token("browser-user")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(listed + "/")
                out = await page.evaluate("([base, token]) => callAigate(base, token)", [gw.url, token])
                await page.screenshot(path=str(tmp_path / "listed.png"))
                if os.environ.get("AIGATE_SCREENSHOTS"):
                    shutil.copy(tmp_path / "listed.png", os.environ["AIGATE_SCREENSHOTS"])
                assert out["chat"]["status"] == 200 and "hello from the page" in out["chat"]["reply"]
                assert out["stream"]["status"] == 200 and out["stream"]["finished"]
                assert out["stream"]["events"] >= 3 and "hello from the page" in out["stream"]["content"]
                assert out["stream"]["reads"] >= 3  # delivered as it was generated, not at the end

                page = await browser.new_page()
                await page.goto(unlisted + "/")
                out = await page.evaluate("([base, token]) => callAigate(base, token)", [gw.url, token])
                # the browser refuses to hand the responses to the page
                assert "Failed to fetch" in out["chat"]["error"]
                assert "Failed to fetch" in out["stream"]["error"]
            finally:
                await browser.close()
    finally:
        await gw.close()
