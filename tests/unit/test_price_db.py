"""Model prices from the price database shipped as a package (genai-prices), overridden
by the configuration, and listed by ``aigate prices``."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import yaml

from aigate.config.loader import parse_config
from aigate.config.price_db import listing, lookup

DOC = {
    "models": [
        {"name": "gpt-4o-mini"},
        {"name": "claude-3-5-haiku", "price": {"input_price": 0, "output_price": 0}},
        {"name": "my-local-model"},
        {"name": "mini", "price": None},
    ],
    "platforms": [
        {"id": "oa", "type": "openai", "base_url": "https://api.openai.com/v1", "models": ["gpt-4o-mini", "dall-e-3"]},
        {"id": "an", "type": "anthropic", "base_url": "https://api.anthropic.com", "models": ["claude-3-5-haiku"]},
        {
            "id": "ol",
            "type": "openai_compatible",
            "base_url": "http://127.0.0.1:11434/v1",
            "models": ["my-local-model"],
        },
        # an alias: looked up by the upstream model name the platform maps it to
        {
            "id": "gm",
            "type": "gemini",
            "base_url": "https://generativelanguage.googleapis.com",
            "models": ["mini"],
            "model_mapping": {"mini": "gemini-2.0-flash"},
        },
    ],
}


def test_lookup_by_platform_type_and_upstream_model():
    found = lookup("openai", "gpt-4o-mini")
    assert (
        found is not None and found.source.startswith("genai-prices ") and found.source.endswith("openai/gpt-4o-mini")
    )
    assert (found.price.input_price, found.price.output_price) == (Decimal("0.15"), Decimal("0.6"))
    assert found.price.input_price_unit == 1_000_000
    assert lookup("anthropic", "claude-3-5-haiku").price.output_price == Decimal(4)
    assert lookup("openai", "no-such-model-anywhere") is None


def test_explicit_prices_win_zeros_included():
    rows = {name: (price, source) for name, price, source in listing(parse_config(DOC, env={}))}
    assert rows["claude-3-5-haiku"][1] == "config" and rows["claude-3-5-haiku"][0].output_price == 0
    assert rows["gpt-4o-mini"][0].output_price == Decimal("0.6") and "genai-prices" in rows["gpt-4o-mini"][1]
    assert rows["mini"][0].input_price == Decimal("0.1") and rows["mini"][1].endswith("google/gemini-2.0-flash")
    assert rows["my-local-model"] == (None, "not in the price database: free")
    assert rows["dall-e-3"] == (None, "not listed in models: free")


def test_prices_command_lists_every_model_and_its_source(tmp_path):
    path = tmp_path / "aigate.yaml"
    path.write_text(yaml.safe_dump(DOC))
    out = subprocess.run(
        [sys.executable, "-m", "aigate.cli", "prices", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("│")}
    assert set(lines) == {"claude-3-5-haiku", "dall-e-3", "gpt-4o-mini", "mini", "my-local-model"}
    assert (
        "0.15" in lines["gpt-4o-mini"]
        and "0.6" in lines["gpt-4o-mini"]
        and "openai/gpt-4o-mini" in lines["gpt-4o-mini"]
    )
    assert "config" in lines["claude-3-5-haiku"]
