"""Runs the TypeScript client's Node tests (clients/typescript, `npm test`: build with tsc,
then `node --test` against an aigate they launch), so `make test` covers them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.app_contract.conftest import ROOT, require_tool

CLIENT = ROOT / "clients" / "typescript"


def require_client_tools() -> str:
    require_tool("node", "the TypeScript client's tests")
    npm = require_tool("npm", "the TypeScript client's tests")
    if not (CLIENT / "node_modules" / ".bin" / "tsc").exists():
        message = "the TypeScript client's build tools are not installed: run `make clients` (npm ci)"
        if os.environ.get("AIGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return npm


def test_typescript_client_against_a_running_aigate():
    npm = require_client_tools()
    env = {**os.environ, "AIGATE_PYTHON": sys.executable}
    result = subprocess.run([npm, "test"], cwd=CLIENT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", result.stdout, re.M)
    assert passed and int(passed.group(1)) >= 20 and failed and failed.group(1) == "0", output[-4000:]
