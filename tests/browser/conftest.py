"""Headless Chromium (Debian's package, driven by Playwright for Python; never a browser
download) against a real aigate on a demo-like configuration with the provider simulator.

One browser and one gateway per test module, shared by its tests. Without Chromium or
the ``playwright`` package the tests skip with the reason, unless AIGATE_REQUIRE_BROWSER=1
(CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

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
