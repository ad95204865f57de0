"""``POST /bp/server/user/{user_id}/tokens/revoke`` (SPEC §10): the app server signs a user
out everywhere. Every user token of that user issued at or before now (aigate's HS256
tokens and identity-provider tokens alike; a token without ``iat`` too) is refused from
then on, on every instance (``aigate.auth.revocations``)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aigate.api.app_routes import server_only
from aigate.auth.caller import Caller
from aigate.clock import iso_ms
from aigate.edge.gate import edge_of
from aigate.services import Services


async def revoke_tokens(request: Request, caller: Caller, services: Services) -> Response:
    revoked = await edge_of(services).revocations.revoke(caller.app.id, caller.user_id)
    body = {"user_id": caller.user_id, "revoked_at": iso_ms(revoked)}
    return Response(orjson.dumps(body), media_type="application/json")


routes = [server_only("/tokens/revoke", revoke_tokens, ["POST"])]
