"""The built TypeScript client in headless Chromium against a running aigate (chat, a stream
read to the end, a stream cut by ai_chat_error, an aborted stream, the server entry refusing
to run in a page), and the offline API docs (/bp/docs, /api/docs) rendered with no request
leaving the machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.app_contract.conftest import ROOT, require_tool
from tests.app_contract.test_typescript_client import CLIENT, require_client_tools

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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


XHR_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>chatStreamXHR from the client's README</title>
<pre id="log"></pre>
<script type="module">
import { chatStreamXHR } from "./readme_xhr.js";
const token = new URLSearchParams(location.search).get("token");
const chat = (content) => ({ strategy: "free-normal", parameters: { example_string: "x" },
                              messages: [{ role: "user", content }] });
const run = (content) => new Promise((resolve) => {
  const items = [];
  chatStreamXHR(location.origin, token, chat(content), (item) => {
    items.push(item);
    if (item.isFinish) resolve({ items });
  }, (err) => resolve({ items, error: { type: err.errorType, status: err.status } }));
});
const whole = await run("tell me a story");
const cut = await run("[[sim error_after=2]] go");
document.getElementById("log").textContent = JSON.stringify({ whole, cut }, null, 1);
window.__result = { whole, cut };
</script>
"""


def readme_xhr_module(tmp_path: Path) -> Path:
    """The client README's React Native XHR example, compiled to a module of this page."""
    readme = (CLIENT / "README.md").read_text()
    block = next(b for b in re.findall(r"^```ts\n(.*?)^```$", readme, re.S | re.M) if "chatStreamXHR" in b)
    source = tmp_path / "readme_xhr.ts"
    source.write_text(block.replace('from "aigate-client"', 'from "./dist/index.js"') + "\nexport { chatStreamXHR };\n")
    subprocess.run(
        [
            str(CLIENT / "node_modules" / ".bin" / "tsc"),
            "--noCheck",
            "--target",
            "ES2022",
            "--module",
            "ES2022",
            "--outDir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    return tmp_path / "readme_xhr.js"


def browser_ready() -> None:
    require_client_tools()
    if not Path(CHROMIUM).exists():
        require_tool("chromium", "the browser test")


@pytest.fixture(scope="module")
def built_client(tmp_path_factory) -> Path:
    """The client built into a directory of this test's own (npm test rebuilds dist/ meanwhile)."""
    browser_ready()
    out = tmp_path_factory.mktemp("client") / "dist"
    subprocess.run(
        [str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json", "--outDir", str(out)],
        cwd=CLIENT,
        check=True,
        timeout=300,
    )
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


def run_page(
    browser, base: str, token: str, built_client: Path, html: str, extra: dict[str, Path], shot: str
) -> tuple[dict, list[str]]:
    """Serves ``html`` and the client's files at aigate's own origin (same origin: no CORS
    needed) and returns what the page left in ``window.__result``."""
    page = browser.new_page()
    try:

        def serve(route):
            path = urlsplit(route.request.url).path.removeprefix("/__client__/")
            if path == "index.html":
                return route.fulfill(status=200, content_type="text/html", body=html)
            file = extra.get(path) or built_client / path.removeprefix("dist/")
            if (path in extra or path.startswith("dist/")) and file.is_file():
                return route.fulfill(status=200, content_type="text/javascript", body=file.read_text())
            return route.fulfill(status=404, body="not found")

        page.route(f"{base}/__client__/**", serve)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/__client__/index.html?token={token}")
        page.wait_for_function("window.__result !== undefined", timeout=60_000)
        result = page.evaluate("window.__result")
        screenshot(page, shot)
    finally:
        page.close()
    return result, errors


def test_the_built_client_works_in_chromium(launched, built_client, browser):
    result, errors = run_page(browser, launched["url"], launched["userToken"], built_client, PAGE, {}, "client")
    assert not errors and "error" not in result, json.dumps(result)[:2000] + str(errors)
    assert "Simulated" in result["reply"]
    items = result["items"]
    assert len(items) >= 3 and items[-1]["isFinish"] is True and not any(i["isFinish"] for i in items[:-1])
    assert items[-1]["tokens"]["total_tokens"] > 0 and items[-1]["asset"][0]["name"] == "ai_credit"
    assert result["cutItems"] == 2
    assert result["cut"] == {"isAigateError": True, "errorType": "upstream_error", "status": 502}
    assert result["abortedItems"] == 2 and result["aborted"] == "AbortError"
    assert "never in a browser" in result["serverEntry"]


def test_the_readme_xhr_stream_works_in_chromium(launched, built_client, browser, tmp_path):
    """React Native is not tested here, but its XHR streaming example runs as written."""
    module = readme_xhr_module(tmp_path)
    result, errors = run_page(
        browser, launched["url"], launched["userToken"], built_client, XHR_PAGE, {"readme_xhr.js": module}, "readme-xhr"
    )
    assert not errors, errors
    whole, cut = result["whole"], result["cut"]
    assert "error" not in whole and whole["items"][-1]["isFinish"] and len(whole["items"]) >= 3
    assert "Simulated" in "".join(i["content"] for i in whole["items"])
    assert len(cut["items"]) == 2 and cut["error"]["type"] == "upstream_error"


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
