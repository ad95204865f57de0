"""CORS for the client App API (``/bp/ai/...`` only; SPEC §10).

* A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no token, so it
  is answered 204 when *any* enabled app lists the ``Origin``, with the route's methods
  and the headers a client sends (``Authorization``, ``Content-Type``, every configured
  attestation header); otherwise 403 without CORS headers.
* A real response (errors included) carries ``Access-Control-Allow-Origin: <origin>`` only
  when the authenticated app lists that origin, and exposes ``Retry-After``.
* Every response says ``Vary: Origin``; ``Access-Control-Allow-Credentials`` is never sent
  (tokens travel in ``Authorization``, not cookies), and neither ``*`` nor ``null`` nor an
  unlisted origin is ever echoed.

Non-browser calls pay one header look-up and one header write.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aigate.auth.index import client_index
from aigate.config.runtime import AppRuntime, Snapshot

BASE_HEADERS = ("Authorization", "Content-Type")
EXPOSED = "Retry-After"


def preflight(snapshot: Snapshot, request: Request, methods: list[str]) -> Response:
    origin = request.headers.get("origin")
    index = client_index(snapshot)
    max_age = index.cors_max_age.get(origin) if origin else None
    if not origin or max_age is None or not request.headers.get("access-control-request-method"):
        message = f"origin {origin!r} may not call the App API" if origin else "not a CORS preflight"
        body = {"error": {"error_type": "unauthorized", "message": message}}
        return Response(orjson.dumps(body), status_code=403, media_type="application/json", headers={"Vary": "Origin"})
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(m for m in methods if m != "OPTIONS"),
            "Access-Control-Allow-Headers": ", ".join((*BASE_HEADERS, *index.attestation_headers)),
            "Access-Control-Max-Age": str(max_age),
            "Vary": "Origin",
        },
    )


def decorate(response: Response, origin: str | None, app: AppRuntime | None) -> Response:
    response.headers.append("Vary", "Origin")
    if origin and app is not None and app.client.cors is not None and origin in app.client.cors.origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
    return response
