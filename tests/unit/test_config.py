"""The configuration file: env expansion, and every error reported with its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aigate.config.loader import ConfigError, expand_env, load_config, parse_config
from tests.gateway import base_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "aigate.yaml"


def test_the_example_config_is_valid_without_any_environment():
    cfg = load_config(EXAMPLE, env={})
    assert cfg.simulator.enabled is True
    assert cfg.apps[0].strategies[0].name == "free-normal"
    assert cfg.apps[0].server_keys[0].key == "demo-server-key-change-me"


def test_env_expansion_with_defaults_and_missing_variables():
    errors: list[str] = []
    doc = {"a": "${X}", "b": ["${Y:-fallback}", "pre-${X}-post"], "c": "${MISSING}"}
    out = expand_env(doc, {"X": "1"}, (), errors)
    assert out == {"a": "1", "b": ["fallback", "pre-1-post"], "c": ""}
    assert errors == ["c: environment variable MISSING is not set"]


def test_a_variable_value_is_data_not_structure():
    out = expand_env({"k": "${V}"}, {"V": "{a: [1, 2]}"}, (), [])
    assert out == {"k": "{a: [1, 2]}"}


def broken_doc() -> dict:
    doc = base_config("sqlite:///x.db", "http://127.0.0.1:9")
    app = doc["apps"][0]
    app["strategies"] += [
        {"name": "s1", "model": "gpt-4o-mini", "platforms": ["x"]},
        {"name": "s2", "model": "no-such-model"},
        {"name": "s3", "model": "gpt-4o-mini", "cost": {"asset": "gold", "per_request": 1}},
        {"name": "s4", "model": "gpt-4o-mini", "system_prompt": "{{ .a "},
        {"name": "s5", "model": "gpt-4o-mini", "tempreature": 1},
        {"name": "s1", "model": "gpt-4o-mini"},
    ]
    doc["platforms"].append({"id": "bad", "type": "carrier-pigeon", "base_url": "ftp://x", "models": ["m"]})
    return doc


def test_every_error_is_listed_with_its_path():
    doc = broken_doc()
    doc["platforms"].pop()  # the schema errors come first; check the reference errors here
    del doc["apps"][0]["strategies"][5]  # s5 has a schema error
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    errors = exc.value.errors
    assert "apps[0].strategies[1].platforms[0]: unknown platform 'x'" in errors
    assert any(e.startswith("apps[0].strategies[2].model: unknown model 'no-such-model'") for e in errors)
    assert "apps[0].strategies[3].cost.asset: unknown asset 'gold'" in errors
    assert any(e.startswith("apps[0].strategies[4].system_prompt: template error") for e in errors)
    assert "apps[0].strategies[5].name: duplicate name 's1'" in errors


def test_schema_errors_name_the_field():
    with pytest.raises(ConfigError) as exc:
        parse_config(broken_doc(), env={})
    errors = exc.value.errors
    assert "apps[0].strategies[5].tempreature: unknown field" in errors
    assert any(e.startswith("platforms[3].type:") for e in errors)
    assert any(e.startswith("platforms[3].base_url:") for e in errors)


def test_config_check_command_exits_non_zero_listing_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(broken_doc()))
    proc = subprocess.run(
        [sys.executable, "-m", "aigate.cli", "config", "check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "apps[0].strategies[5].tempreature: unknown field" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "aigate.cli", "config", "check", str(EXAMPLE)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr


def test_token_mint_command(tmp_path):
    import jwt

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aigate.cli",
            "token",
            "mint",
            "--app",
            "APPDEMO",
            "--user",
            "u1",
            "--config",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    claims = jwt.decode(proc.stdout.strip(), "demo-token-secret-change-me-0123456789", algorithms=["HS256"])
    assert claims["sub"] == "u1" and claims["app_id"] == "APPDEMO"
