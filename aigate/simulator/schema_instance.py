"""A deterministic JSON value that conforms to a JSON Schema: the simulator's JSON mode.

Real models fill a forced tool call's input (Anthropic) or a ``json_schema`` response
format (OpenAI) with a value that follows the schema; the simulator does the same with
fixed values, so SDKs that parse the answer into the caller's type (``instructor``,
``chat.completions.parse``) succeed. Rules: ``const`` and the first ``enum`` value win;
objects get every property (required or not); arrays one item (or ``minItems``);
strings the ``text`` given (or the first ``enum``); integers and numbers ``minimum`` or
1; booleans ``true``; ``anyOf``/``oneOf`` the first non-null branch; ``$ref`` to
``#/$defs/...`` or ``#/definitions/...`` is followed. Without a schema: an object holding
``reply``.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 12  # recursive models ($ref cycles) stop here with null


def instance(schema: Any, text: str) -> Any:
    """A value valid against ``schema``; string fields hold ``text``."""
    if not isinstance(schema, dict) or not schema:
        return {"reply": text, "simulated": True}
    return _value(schema, schema, text, 0)


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for key in ref.removeprefix("#/").split("/"):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first non-null type
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    return kind.lower() if isinstance(kind, str) else None  # Gemini writes "OBJECT"


def _value(schema: dict[str, Any], root: dict[str, Any], text: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _value(_resolve(root, str(schema["$ref"])), root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
            return _value(usable[0] if usable else branches[0], root, text, depth + 1)
    kind = _type(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {
            name: _value(sub if isinstance(sub, dict) else {}, root, text, depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems") or 1))
        item = _value(items if isinstance(items, dict) else {}, root, text, depth + 1)
        return [item] * count
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text  # string, or a schema without a type
