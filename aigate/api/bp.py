"""The App API (seeds 000 and 002): every route, under both prefixes."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aigate.api.app_routes import server_only
from aigate.api.body import read_body
from aigate.api.errors import invalid
from aigate.auth.caller import Caller
from aigate.auth.tokens import mint_user_token
from aigate.clock import iso_ms
from aigate.services import Services

import orjson


async def mint_token(request: Request, caller: Caller, services: Services) -> Response:
    raw = await read_body(request, services.config.server.max_body_bytes)
    body = orjson.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    ttl = body.get("ttl_seconds", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 31_536_000:
        raise invalid("ttl_seconds: must be an integer from 1 to 31536000")
    token, exp = mint_user_token(caller.app.id, caller.user_id, caller.app.user_token_secret, ttl)
    return Response(
        orjson.dumps({"token": token, "expires_at": iso_ms(exp * 1000).replace(".000Z", "Z")}),
        media_type="application/json",
    )


routes = [
    server_only("/token", mint_token, ["POST"]),
]
