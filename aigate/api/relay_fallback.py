"""What the relay answers for a ``/v1`` path it does not serve, or a method it does not
accept: OpenAI's error JSON, never Starlette's plain text, so an SDK's error carries its
``type`` and ``code``.

- an unknown path: 404 ``{"error": {"message": "Invalid URL (POST /v1/foo)", "type":
  "invalid_request_error", "param": null, "code": "unknown_url"}}``;
- a served path with a wrong method: 405 ``Invalid method for URL (GET
  /v1/chat/completions)``, ``code: "method_not_allowed"``, with an ``Allow`` header;
- under ``/v1/messages`` (the Anthropic Messages API) the same in Anthropic's error shape,
  ``{"type": "error", "error": {"type": "not_found_error", "message"}}``.

It must be the app's last route: Starlette prefers a route matching path and method,
and only then (405) one matching the path alone, so this catch-all sees every request
no other route takes and asks the others which methods the path accepts. No
authentication: the answer discloses nothing beyond the public API's shape.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

JSON = "application/json"


def _allowed_methods(request: Request) -> list[str]:
    """Methods other routes accept for this path ([] when no route has the path)."""
    allowed: set[str] = set()
    routes: list[BaseRoute] = request.app.router.routes
    for route in routes:
        if route is ROUTE:
            continue
        match, _ = route.matches(request.scope)
        if match == Match.PARTIAL and isinstance(route, Route) and route.methods:
            allowed.update(route.methods)
    return sorted(allowed)


def _anthropic_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def _openai_body(message: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})


async def unserved(request: Request) -> Response:
    what = f"{request.method} {request.url.path}"
    anthropic = request.url.path.startswith("/v1/messages")
    allowed = _allowed_methods(request)
    if allowed:
        message = f"Invalid method for URL ({what}); allowed: {', '.join(allowed)}."
        body = (
            _anthropic_body("invalid_request_error", message)
            if anthropic
            else _openai_body(message, "method_not_allowed")
        )
        return Response(body, status_code=405, media_type=JSON, headers={"Allow": ", ".join(allowed)})
    message = f"Invalid URL ({what})."
    body = _anthropic_body("not_found_error", message) if anthropic else _openai_body(message, "unknown_url")
    return Response(body, status_code=404, media_type=JSON)


METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ROUTE = Route("/v1/{path:path}", unserved, methods=METHODS)
routes = [ROUTE]
