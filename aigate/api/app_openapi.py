"""The App API's OpenAPI 3.1 document, generated from the route table and ``app_schema``.

Each route registered with ``both_prefixes``/``server_only`` is looked up in ``OPERATIONS``
by its method and its path below the prefix (``/ai/chat``, ``/token``); a route without
an entry, or an entry without a route, is an error, so the document cannot miss or
invent an endpoint. Error responses come from ``aigate.errors.STATUS``: an operation
documents every error type except those it lists as impossible, so a type added to the
table later is documented everywhere by itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from aigate.api import app_schema as s
from aigate.auth.caller import USER_ID
from aigate.errors import STATUS

CLIENT_ROOT = "/bp"
SERVER_ROOT = "/bp/server/user/{user_id}"
REF = "#/components/schemas/{model}"

# Error types only a metered call (strategy, credits, upstream) can produce. (limit_exceeded
# is not among them: edge rate limits and the cap on failed authentications apply to every route.)
CALL_ONLY = frozenset({"config_invalid", "insufficient_asset", "upstream_error", "upstream_timeout"})
# ... and only a request with a body can be too large.
BODY_ONLY = frozenset({"payload_too_large"})
NO_BODY = CALL_ONLY | BODY_ONLY | {"item_not_found"}


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    response: type[BaseModel] | None  # None: 200 with an empty body
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    stream: bool = False
    impossible: frozenset[str] = field(default_factory=frozenset)
    description: str = ""


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/token"): Operation(
        "Mint a user token",
        "app server",
        s.TokenResponse,
        body=s.TokenRequest,
        impossible=CALL_ONLY | {"item_not_found"},
        description="The app server mints an HS256 user token for `user_id` (body optional).",
    ),
    ("POST", "/tokens/revoke"): Operation(
        "Revoke a user's tokens",
        "app server",
        s.TokensRevoked,
        impossible=NO_BODY,
        description="Every user token of `user_id` issued at or before now is refused from then on.",
    ),
    ("POST", "/ai/chat"): Operation(
        "Chat",
        "chat",
        s.ChatResponse,
        body=s.ChatRequest,
        description="Runs the strategy's chat: system prompt, saved history, the new messages.",
    ),
    ("POST", "/ai/chat/stream"): Operation(
        "Chat, streamed",
        "chat",
        None,
        body=s.ChatRequest,
        stream=True,
        description=(
            "The same call as `/chat`, answered as server-sent events. Each piece of the reply is "
            "`event: ai_chat_msg` with `is_finish: false`; the stream ends with one `ai_chat_msg` "
            "whose `is_finish` is true and which carries `tokens`, `asset` and the counts. An error "
            "before the first byte is an ordinary JSON error with its status; an error after it is "
            "one `event: ai_chat_error` whose data is the error object, then the stream closes. "
            "A client that disconnects stops the upstream call; what was generated is saved and billed."
        ),
    ),
    ("GET", "/ai/chat/history"): Operation(
        "A chat's history", "chat", s.ChatHistoryResponse, query=s.ChatHistoryQuery, impossible=CALL_ONLY | BODY_ONLY
    ),
    ("GET", "/ai/chats"): Operation(
        "The user's chats", "chat", s.ChatsResponse, query=s.ChatsQuery, impossible=NO_BODY
    ),
    ("POST", "/ai/chat/delete"): Operation(
        "Delete chats",
        "chat",
        None,
        body=s.ChatDeleteRequest,
        impossible=CALL_ONLY | {"item_not_found"},
        description="Idempotent: unknown, repeated and other users' ids are ignored.",
    ),
    ("POST", "/ai/chat/instruction"): Operation(
        "Run an instruction",
        "instruction",
        s.InstructionResponse,
        body=s.InstructionRequest,
        description="Renders the named single-shot prompt template with `parameters` and runs it.",
    ),
    ("GET", "/ai/assets"): Operation(
        "The user's assets", "assets", s.AssetsResponse, impossible=NO_BODY | {"invalid_parameter"}
    ),
    ("POST", "/ai/assets/grant"): Operation(
        "Grant credits",
        "app server",
        s.GrantResponse,
        body=s.GrantRequest,
        impossible=CALL_ONLY | {"item_not_found"},
        description="Adds purchased credits; the same idempotency key twice grants once.",
    ),
    ("POST", "/ai/ai_request"): Operation(
        "Run an AI request",
        "ai requests",
        s.AiRequestRecord,
        body=s.AiRequestSubmit,
        description=(
            "Runs a strategy of any module. Synchronous modules answer the final record; "
            "asynchronous ones answer at once with `pending` or `queueing`: read "
            "`/ai_request/{request_id}` until `succeeded` or `failed`."
        ),
    ),
    ("GET", "/ai/ai_request/history/query"): Operation(
        "AI request history", "ai requests", s.AiRequestHistory, query=s.AiRequestHistoryQuery, impossible=NO_BODY
    ),
    ("POST", "/ai/ai_request/history/delete"): Operation(
        "Delete AI requests",
        "ai requests",
        None,
        body=s.AiRequestDelete,
        impossible=CALL_ONLY | {"item_not_found"},
        description="Idempotent: unknown, repeated and other users' ids are ignored; a running job is kept.",
    ),
    ("GET", "/ai/ai_request/{request_id}"): Operation(
        "Read an AI request", "ai requests", s.AiRequestRecord, impossible=CALL_ONLY | BODY_ONLY | {"invalid_parameter"}
    ),
}

TAGS = ("chat", "instruction", "assets", "ai requests", "app server")

SECURITY_SCHEMES = {
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user token (HS256 JWT with app_id, sub, exp), for `/bp/ai/...`.",
    },
    "serverKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The app server key, for `/bp/server/user/{user_id}/...` (never ship it in an app).",
    },
}


def route_key(path: str) -> tuple[str, str] | None:
    """(surface, path below the prefix) of an App API route path, or None."""
    if path.startswith(SERVER_ROOT + "/"):
        return "server", path[len(SERVER_ROOT) :]
    if path.startswith(CLIENT_ROOT + "/ai/"):
        return "client", path[len(CLIENT_ROOT) :]
    return None


def error_types(op: Operation, surface: str) -> list[str]:
    impossible = op.impossible - {"invalid_parameter"} if surface == "server" else op.impossible  # a bad user_id
    return [t for t in STATUS if t not in impossible]


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [s.ErrorResponse, *(model for _, model, _ in s.STREAM_EVENTS)]
    for op in OPERATIONS.values():
        found += [m for m in (op.body, op.response) if m is not None]
    return list(dict.fromkeys(found))


def _components() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "serialization") for m in _models()], ref_template=REF)
    schemas = defs["$defs"]
    schemas["ErrorDetail"]["properties"]["error_type"]["enum"] = list(STATUS)
    schemas["ChatStreamEvent"] = {
        "description": (
            "One server-sent event of a chat stream: its `event` name and its `data`, "
            "a JSON document described by `contentSchema`."
        ),
        "anyOf": [_event_schema(*event) for event in s.STREAM_EVENTS],
    }
    return schemas


def _event_schema(name: str, model: type[BaseModel], description: str) -> dict[str, Any]:
    """One event as the SSE framing delivers it (the OpenAPI 3.2 way of describing a stream)."""
    return {
        "type": "object",
        "description": description,
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": REF.format(model=model.__name__)},
            },
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
        if "anyOf" in prop:  # X | None: the parameter is simply absent when not given
            prop = next(p for p in prop.pop("anyOf") if p.get("type") != "null") | prop
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _error_responses(op: Operation, surface: str) -> dict[str, Any]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for error_type in error_types(op, surface):
        by_status[STATUS[error_type]].append(error_type)
    out = {}
    for status, types in sorted(by_status.items()):
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["error_type", "message"],
                    "properties": {"error_type": {"enum": types}, "message": {"type": "string"}},
                }
            },
        }
        response: dict[str, Any] = {
            "description": ", ".join(types),
            "content": {"application/json": {"schema": schema}},
        }
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
            }
        out[str(status)] = response
    return out


def _success(op: Operation) -> dict[str, Any]:
    if op.stream:
        return {
            "description": "A stream of server-sent events (see ChatStreamEvent)",
            "content": {"text/event-stream": {"schema": {"$ref": REF.format(model="ChatStreamEvent")}}},
        }
    if op.response is None:
        return {"description": "Done (empty body)"}
    return {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}},
    }


def _operation(surface: str, key: tuple[str, str], path: str, op: Operation) -> dict[str, Any]:
    method, rel = key
    params: list[dict[str, Any]] = []
    if surface == "server":
        params.append(
            {
                "name": "user_id",
                "in": "path",
                "required": True,
                "description": "The end user",
                "schema": {"type": "string", "pattern": USER_ID.pattern},
            }
        )
    if "{request_id}" in path:
        params.append({"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}})
    if op.query is not None:
        params += _query_parameters(op.query)
    out: dict[str, Any] = {
        "operationId": f"{surface}_{method.lower()}{rel.replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{"userToken": []}] if surface == "client" else [{"serverKey": []}],
        "responses": {"200": _success(op), **_error_responses(op, surface)},
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        required = key != ("POST", "/token")
        out["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
        }
    return out


def build_document(routes: Iterable[Route], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for route in routes:
        where = route_key(route.path)
        if where is None:
            continue
        surface, rel = where
        assert route.methods is not None  # App API routes are functions: Starlette sets their methods
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):  # OPTIONS: CORS preflights
            key = (method, rel)
            if key not in OPERATIONS:
                raise LookupError(f"App API route {method} {route.path} has no entry in app_openapi.OPERATIONS")
            seen.add(key)
            paths.setdefault(route.path, {})[method.lower()] = _operation(surface, key, route.path, OPERATIONS[key])
    missing = set(OPERATIONS) - seen
    if missing:
        raise LookupError(f"OPERATIONS entries without a route: {sorted(missing)}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aigate App API",
            "version": version,
            "description": (
                "The API an app's clients (`/bp/ai/...`, a user token) and its server "
                "(`/bp/server/user/{user_id}/...`, the app server key) call. Every error is "
                '`{"error": {"error_type", "message"}}` with the status of its type.'
            ),
        },
        "tags": [{"name": tag} for tag in TAGS],
        "paths": paths,
        "components": {"schemas": _components(), "securitySchemes": SECURITY_SCHEMES},
    }
