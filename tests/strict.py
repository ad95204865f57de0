"""Strict parsing with the official SDKs' own types.

The SDKs' pydantic models accept unknown fields (``extra="allow"``) and keep them in
``model_extra``; ``strict_parse`` validates a document (missing required fields and wrong
types raise) and then walks the parsed tree, failing on any field the type does not
declare. That is "no unknown or missing required field", checked by the SDK's own schema.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
from pydantic import TypeAdapter

T = TypeVar("T")


def _unknown_fields(value: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        for name in value.model_extra or {}:
            found.append(f"{path}.{name} (unknown to {type(value).__name__})")
        for name in type(value).model_fields:
            found.extend(_unknown_fields(getattr(value, name), f"{path}.{name}"))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.extend(_unknown_fields(item, f"{path}[{index}]"))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(_unknown_fields(item, f"{path}.{key}"))
    return found


def strict_parse(kind: Any, data: Any) -> Any:
    """``data`` parsed as ``kind`` (a model or a union type such as an SDK's stream event
    union); raises AssertionError naming every field the type does not declare."""
    if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
        parsed = kind.model_validate(data)
    else:
        parsed = TypeAdapter(kind).validate_python(data)
    unknown = _unknown_fields(parsed, "$")
    assert not unknown, f"fields unknown to the SDK's types: {unknown}"
    return parsed
