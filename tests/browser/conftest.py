"""Headless Chromium (Debian's package, driven by Playwright for Python; never a browser
download) against a real aigate on a demo-like configuration with the provider simulator.

One browser and one gateway per test module, shared by its tests. Without Chromium or
the ``playwright`` package the tests skip with the reason, unless AIGATE_REQUIRE_BROWSER=1
(CI), where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

from tests.gateway import ADMIN_KEY

CHROMIUM = os.environ.get("AIGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The tests write their screenshots to a git-ignored folder, so a test run leaves the tree
# clean; AIGATE_UPDATE_SCREENSHOTS=1 writes them to docs/console/, the README's pictures.
SCREENSHOTS = Path(__file__).resolve().parents[2] / (
    "docs/console" if os.environ.get("AIGATE_UPDATE_SCREENSHOTS") == "1" else "tests/browser/.screenshots"
)


def _missing() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return ""


def require_browser() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("AIGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AIGATE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(f"browser tests skipped: {reason}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser, env):
    """A page of a fresh browser context, signed in as admin (the module's one session)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, storage_state=env.admin_state)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.accept())))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        await context.close()


async def admin_state(browser, env) -> dict:
    """The storage state of a browser signed in with the admin key (the module's one session)."""
    context = await browser.new_context()
    await signin(await context.new_page(), env)
    state = await context.storage_state()
    await context.close()
    return state


async def signin(page, env, *, admin_key: str = ADMIN_KEY, username: str = "", password: str = "") -> None:
    await page.goto(env.url + "/console/signin")
    if username:
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill(password)
    else:
        await page.get_by_label("Admin key").fill(admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console/dashboard")


async def open_console(page, env) -> None:
    await page.goto(env.url + "/console/dashboard")


async def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def admin_api(env, method: str, path: str, body=None) -> dict:
    async with env.gw.session.request(method, env.url + "/api" + path, json=body, headers=env.gw.admin_headers()) as r:
        return await r.json()
