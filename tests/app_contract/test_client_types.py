"""The TypeScript client's hand-written types and error table agree with the code they
describe: each response interface has exactly the fields of its pydantic model in
``aigate.api.app_schema``, and ``ERROR_STATUS`` is ``aigate.errors.STATUS``."""

from __future__ import annotations

import re

import pytest

from aigate.api import app_schema as s
from aigate.errors import STATUS
from tests.app_contract.test_typescript_client import CLIENT

SRC = CLIENT / "src"

# TypeScript interface -> the pydantic model it mirrors
MIRRORS = {
    "Tokens": s.Tokens,
    "Asset": s.Asset,
    "ChatRequest": s.ChatRequest,
    "ChatResponse": s.ChatResponse,
    "ChatExchange": s.ChatExchange,
    "ChatHistoryResponse": s.ChatHistoryResponse,
    "ChatSummary": s.ChatSummary,
    "ChatsResponse": s.ChatsResponse,
    "InstructionRequest": s.InstructionRequest,
    "InstructionResponse": s.InstructionResponse,
    "AssetsResponse": s.AssetsResponse,
    "UnitPrice": s.UnitPrice,
    "AiRequestSubmit": s.AiRequestSubmit,
    "AiRequestRecord": s.AiRequestRecord,
    "AiRequestHistory": s.AiRequestHistory,
    "TokenResponse": s.TokenResponse,
    "TokensRevoked": s.TokensRevoked,
    "GrantRequest": s.GrantRequest,
    "GrantResponse": s.GrantResponse,
    "Message": s.Message,
    "TextPart": s.TextPart,
}


def interfaces(text: str) -> dict[str, dict[str, bool]]:
    """name -> {field: optional} for each top-level ``export interface``."""
    out = {}
    for match in re.finditer(r"^export interface (\w+) \{\n(.*?)^\}", text, re.S | re.M):
        fields = {}
        for line in match.group(2).splitlines():
            field = re.match(r"^  (\w+)(\??):", line)
            if field:
                fields[field.group(1)] = field.group(2) == "?"
        out[match.group(1)] = fields
    return out


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_interface_fields_match_the_model(name):
    found = interfaces((SRC / "types.ts").read_text())
    model = MIRRORS[name]
    assert name in found, f"interface {name} is missing from types.ts"
    ts_fields = found[name]
    assert set(ts_fields) == set(model.model_fields), f"{name}: {sorted(ts_fields)} != {sorted(model.model_fields)}"
    for field, info in model.model_fields.items():
        # a request field with a default may be left out; a response field never is
        assert ts_fields[field] == (not info.is_required()), f"{name}.{field}: optional in one, not the other"


def test_error_table_matches_the_server():
    text = (SRC / "errors.ts").read_text()
    table = dict(re.findall(r"^  (\w+): (\d+),$", text, re.M))
    assert {k: int(v) for k, v in table.items()} == STATUS
