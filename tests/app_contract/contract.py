"""Validating live App API responses against the served ``/bp/openapi.json`` (Draft 2020-12)."""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator

from aigate.api.app_openapi import CLIENT_ROOT, SERVER_ROOT


class Contract:
    """The document plus a record of which (operation, outcome) pairs were seen live."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str, str]] = set()  # (surface, method, rel, outcome)

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        # the document's components travel with the schema, so "#/components/..." resolves
        return Draft202012Validator({**schema, "components": self.doc["components"]})

    def operation(self, surface: str, method: str, rel: str) -> dict[str, Any]:
        root = CLIENT_ROOT if surface == "client" else SERVER_ROOT
        return self.doc["paths"][root + rel][method.lower()]

    def check(self, surface: str, method: str, rel: str, status: int, content_type: str, body: bytes) -> Any:
        """The response is documented for this operation and validates; returns its JSON."""
        responses = self.operation(surface, method, rel)["responses"]
        assert str(status) in responses, f"{method} {rel}: status {status} is not documented ({body[:200]!r})"
        spec = responses[str(status)]
        if "content" not in spec:
            assert body == b"", f"{method} {rel}: documented as an empty body, got {body[:200]!r}"
            self.seen.add((surface, method, rel, "200"))
            return None
        assert content_type.startswith("application/json"), content_type
        data = orjson.loads(body)
        self.validator(spec["content"]["application/json"]["schema"]).validate(data)
        outcome = "200" if status == 200 else data["error"]["error_type"]
        self.seen.add((surface, method, rel, outcome))
        return data

    def check_event(self, event: str, data: str) -> Any:
        """One SSE event validates against exactly one documented event schema; returns its data."""
        raw = {"event": event, "data": data}
        self.validator({"$ref": "#/components/schemas/ChatStreamEvent"}).validate(raw)
        parsed = orjson.loads(data)
        matches = [
            variant
            for variant in self.doc["components"]["schemas"]["ChatStreamEvent"]["anyOf"]
            if variant["properties"]["event"]["const"] == event
            and self.validator(variant["properties"]["data"]["contentSchema"]).is_valid(parsed)
        ]
        assert len(matches) == 1, f"event {event} {data!r} matches {len(matches)} documented events"
        return parsed

    def documented(self) -> set[tuple[str, str, str, str]]:
        """Every (surface, method, rel, outcome) the document promises."""
        out = set()
        for path, item in self.doc["paths"].items():
            surface, root = ("server", SERVER_ROOT) if path.startswith(SERVER_ROOT) else ("client", CLIENT_ROOT)
            for method, op in item.items():
                for status, spec in op["responses"].items():
                    if status == "200":
                        out.add((surface, method.upper(), path[len(root) :], "200"))
                        continue
                    schema = spec["content"]["application/json"]["schema"]
                    for error_type in schema["properties"]["error"]["properties"]["error_type"]["enum"]:
                        out.add((surface, method.upper(), path[len(root) :], error_type))
        return out
