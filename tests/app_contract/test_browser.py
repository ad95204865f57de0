"""The built TypeScript client in headless Chromium against a running aigate (chat, a stream
read to the end, a stream cut by ai_chat_error, an aborted stream, the server entry refusing
to run in a page), and the offline API docs (/bp/docs, /api/docs) rendered with no request
leaving the machine."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.app_contract.conftest import ROOT, require_tool
from tests.app_contract.test_typescript_client import CLIENT, require_client_tools

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "tests" / "app_contract" / ".screenshots"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>aigate-client in a browser</title>
<h1>aigate-client in a browser</h1>
<pre id="log"></pre>
<script type="module">
import { AigateClient, AigateError } from "./dist/index.js";
const out = {};
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const token = new URLSearchParams(location.search).get("token");
const client = new AigateClient({ baseUrl: location.origin, getToken: () => token });
const chat = (content) => ({ strategy: "free-normal", parameters: { example_string: "a pirate" },
                              messages: [{ role: "user", content }] });
try {
  const reply = await client.chat(chat("hello from a browser"));
  out.reply = reply.reply.content;
  log("chat: " + out.reply);

  out.items = [];
  for await (const item of client.chatStream(chat("tell me a story"))) out.items.push(item);
  log(`stream: ${out.items.length} items, last: ${JSON.stringify(out.items.at(-1).tokens)}`);

  out.cutItems = 0;
  try {
    for await (const item of client.chatStream(chat("[[sim error_after=2]] go"))) out.cutItems++;
  } catch (err) {
    out.cut = { isAigateError: err instanceof AigateError, errorType: err.errorType, status: err.status };
    log(`cut stream: ${out.cutItems} items, then ${err.errorType} (${err.status}): ${err.message}`);
  }

  const controller = new AbortController();
  out.abortedItems = 0;
  try {
    for await (const item of client.chatStream(chat("[[sim chunks=200 chunk_interval_ms=20]] long"),
                                               { signal: controller.signal })) {
      if (++out.abortedItems === 2) controller.abort();
    }
  } catch (err) {
    out.aborted = err.name;
    log(`aborted stream: ${out.abortedItems} items, then ${err.name}`);
  }

  try {
    const { AigateServer } = await import("./dist/server.js");
    new AigateServer({ baseUrl: location.origin, serverKey: "a-server-key-0123456789" });
    out.serverEntry = "constructed";
  } catch (err) {
    out.serverEntry = err.message;
    log("server entry: " + err.message);
  }
} catch (err) {
  out.error = String(err && err.stack || err);
  log("FAILED: " + out.error);
}
window.__result = out;
</script>
"""


def browser_ready() -> None:
    require_client_tools()
    if not Path(CHROMIUM).exists():
        require_tool("chromium", "the browser test")


@pytest.fixture(scope="module")
def built_client(tmp_path_factory) -> Path:
    """The client built into a directory of this test's own (npm test rebuilds dist/ meanwhile)."""
    browser_ready()
    out = tmp_path_factory.mktemp("client") / "dist"
    subprocess.run([str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json", "--outDir", str(out)],
                   cwd=CLIENT, check=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def browser():
    browser_ready()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot(page, name: str) -> None:
    if os.environ.get("AIGATE_SCREENSHOTS"):
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_built_client_works_in_chromium(launched, built_client, browser):
    base = launched["url"]
    page = browser.new_page()
    try:
        # the page and the client's files are served at aigate's own origin (same origin, no CORS)
        def serve(route):
            path = urlsplit(route.request.url).path.removeprefix("/__client__/")
            if path == "index.html":
                return route.fulfill(status=200, content_type="text/html", body=PAGE)
            file = built_client / path.removeprefix("dist/")
            if path.startswith("dist/") and file.is_file():
                return route.fulfill(status=200, content_type="text/javascript", body=file.read_text())
            return route.fulfill(status=404, body="not found")

        page.route(f"{base}/__client__/**", serve)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/__client__/index.html?token={launched['userToken']}")
        page.wait_for_function("window.__result !== undefined", timeout=60_000)
        result = page.evaluate("window.__result")
        screenshot(page, "client")
    finally:
        page.close()
    assert not errors and "error" not in result, json.dumps(result)[:2000] + str(errors)
    assert "Simulated" in result["reply"]
    items = result["items"]
    assert len(items) >= 3 and items[-1]["isFinish"] is True and not any(i["isFinish"] for i in items[:-1])
    assert items[-1]["tokens"]["total_tokens"] > 0 and items[-1]["asset"][0]["name"] == "ai_credit"
    assert result["cutItems"] == 2
    assert result["cut"] == {"isAigateError": True, "errorType": "upstream_error", "status": 502}
    assert result["abortedItems"] == 2 and result["aborted"] == "AbortError"
    assert "never in a browser" in result["serverEntry"]


@pytest.mark.parametrize("path, title", [("/bp/docs", "aigate App API"), ("/api/docs", "aigate Admin API")])
def test_api_docs_render_offline(launched, browser, path, title):
    base = launched["url"]
    page = browser.new_page()
    hosts: set[str] = set()
    page.on("request", lambda req: hosts.add(urlsplit(req.url).netloc))
    try:
        page.goto(base + path)
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        page.wait_for_selector(".opblock", timeout=30_000)
        assert title in page.inner_text(".swagger-ui .info .title")
        operations = page.locator(".opblock").count()
        screenshot(page, path.strip("/").replace("/", "-"))
    finally:
        page.close()
    assert hosts == {urlsplit(base).netloc}, f"requests left the machine: {hosts}"
    assert operations >= (24 if path == "/bp/docs" else 10)
