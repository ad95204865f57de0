"""Property-based requests (schemathesis) against a running aigate, under both prefixes:
no server error, and every response's status, content type and body as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.parametrize("surface", ["client", "server"])
def test_schemathesis_finds_no_server_error(launched, surface, tmp_path):
    auth = launched["userToken"] if surface == "client" else launched["serverKey"]
    prefix = "^/bp/ai/" if surface == "client" else "^/bp/server/"
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        launched["url"] + "/bp/openapi.json",
        "--include-path-regex",
        prefix,
        "-H",
        f"Authorization: Bearer {auth}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
