"""A real aigate in its own process (``launch``), for the tools that test it from outside:
schemathesis, the TypeScript client's Node tests, the browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_tool(name: str, what: str) -> str:
    """The tool's path; skip with a visible reason when it is missing, or fail when
    AIGATE_REQUIRE_BROWSER=1 (CI) says it must be there."""
    path = shutil.which(name)
    if path is None:
        message = f"{what} needs {name}, which is not installed"
        if os.environ.get("AIGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (AIGATE_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def launched():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.app_contract.launch"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the launcher exited with {proc.wait()} before aigate was ready")
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
