"""The App API (seeds 000 and 002): every route, under both prefixes."""

from __future__ import annotations

from decimal import Decimal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aigate.api.app_routes import both_prefixes, server_only
from aigate.api.body import read_body, read_json_object
from aigate.api.event_stream import EventStream
from aigate.api.params import id_list, int_param
from aigate.auth.caller import Caller
from aigate.auth.tokens import mint_user_token
from aigate.clock import iso_ms
from aigate.edge.gate import edge_of
from aigate.engine import chat, chat_history, metering
from aigate.engine.instruction import run_instruction
from aigate.errors import invalid
from aigate.services import Services


def json(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def client_ip(request: Request) -> str:
    """The client's address as the edge sees it (``server.trusted_proxies`` honoured)."""
    return edge_of(request.app.state.services).client_ip(request)


async def chat_once(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    result = await chat.start(services, caller, body, request.url.path, client_ip(request), stream=False)
    return json(result)


async def chat_stream(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    frames = await chat.start(services, caller, body, request.url.path, client_ip(request), stream=True)
    return EventStream(frames)


async def chat_history_route(request: Request, caller: Caller, services: Services) -> Response:
    q = request.query_params
    chat_id = q.get("chat_id", "")
    if not chat_id:
        raise invalid("chat_id: required")
    page = int_param(q, "page", 1, 1, 100_000)
    page_size = int_param(q, "page_size", 10, 1, 100)
    return json(await chat_history.history(services, caller, chat_id, page, page_size))


async def chats_route(request: Request, caller: Caller, services: Services) -> Response:
    q = request.query_params
    page = int_param(q, "page", 1, 1, 100_000)
    page_size = int_param(q, "page_size", 10, 1, 100)
    return json(await chat_history.list_chats(services, caller, page, page_size))


async def chat_delete(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    await chat_history.delete_chats(services, caller, id_list(body, "chat_ids"))
    return Response(status_code=200)


async def instruction_route(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    return json(await run_instruction(services, caller, body, request.url.path, client_ip(request)))


async def assets_route(request: Request, caller: Caller, services: Services) -> Response:
    balances, recovered = await metering.read_assets(services, caller)
    return json({"asset": metering.assets_json(caller, balances, recovered)})


MAX_GRANT = Decimal(10) ** 12  # stored in millionths: far inside a 64-bit integer


def _grant_quantity(value: object, precision: int) -> Decimal:
    """A positive number with at most the asset's ``precision`` decimal places."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid("quantity: must be a positive number")
    quantity = Decimal(str(value))
    if not quantity.is_finite() or quantity <= 0 or quantity > MAX_GRANT:
        raise invalid(f"quantity: must be a positive number up to {MAX_GRANT}")
    exponent = quantity.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > precision:
        raise invalid(f"quantity: at most {precision} decimal places for this asset")
    return quantity


async def grant_route(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    asset = body.get("asset")
    if not isinstance(asset, str) or asset not in caller.app.assets:
        raise invalid(f"asset: unknown asset {asset!r}")
    quantity = _grant_quantity(body.get("quantity"), caller.app.assets[asset].precision)
    key = body.get("idempotency_key")
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        raise invalid("idempotency_key: required, a string of 1-200 characters")
    granted = await metering.grant(services, caller, asset, quantity, key)
    balances, recovered = await metering.read_assets(services, caller)
    return json({"granted": granted, "asset": metering.assets_json(caller, balances, recovered)})


async def mint_token(request: Request, caller: Caller, services: Services) -> Response:
    raw = await read_body(request, services.config.server.max_body_bytes)
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise invalid("body: malformed JSON") from None
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    ttl = body.get("ttl_seconds", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 31_536_000:
        raise invalid("ttl_seconds: must be an integer from 1 to 31536000")
    token, exp = mint_user_token(caller.app.id, caller.user_id, caller.app.user_token_secret, ttl)
    return json({"token": token, "expires_at": iso_ms(exp * 1000).replace(".000Z", "Z")})


routes = [
    server_only("/token", mint_token, ["POST"]),
    *both_prefixes("/chat", chat_once, ["POST"]),
    *both_prefixes("/chat/stream", chat_stream, ["POST"]),
    *both_prefixes("/chat/history", chat_history_route, ["GET"]),
    *both_prefixes("/chats", chats_route, ["GET"]),
    *both_prefixes("/chat/delete", chat_delete, ["POST"]),
    *both_prefixes("/chat/instruction", instruction_route, ["POST"]),
    *both_prefixes("/assets", assets_route, ["GET"]),
    server_only("/ai/assets/grant", grant_route, ["POST"]),
]
