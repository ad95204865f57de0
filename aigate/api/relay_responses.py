"""The Responses API on the relay: ``POST /v1/responses`` (stream or not),
``GET /v1/responses/{id}`` and ``DELETE /v1/responses/{id}`` (``aigate.engine.responses``).
Authentication and OpenAI-shaped errors as every ``/v1`` route (``aigate.api.relay``)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aigate.api.body import read_body
from aigate.api.event_stream import EventStream
from aigate.api.relay import JSON, client_ip, relay_endpoint
from aigate.config.runtime import RelayToken
from aigate.engine import relay, response_store, responses
from aigate.engine.relay import RelayError
from aigate.errors import AppError
from aigate.services import Services


def _not_found(response_id: str) -> RelayError:
    return RelayError(404, f"No response found with id '{response_id}'.", param="response_id", code="not_found")


async def create(request: Request, services: Services, token: RelayToken) -> Response:
    endpoint, ip = request.url.path, client_ip(request)
    try:
        raw = await read_body(request, services.config.server.max_body_bytes)
    except AppError as exc:
        raise await relay.refuse(services, token, "chat", endpoint, ip, RelayError(exc.status, exc.message)) from None
    call = await responses.begin(services, token, raw, endpoint, ip)
    headers = {"x-request-id": call.request_id}
    if not call.relay.stream:
        return Response(orjson.dumps(await responses.complete(call)), media_type=JSON, headers=headers)
    frames = await responses.open_stream(call)
    return EventStream(frames, headers)


async def retrieve(request: Request, services: Services, token: RelayToken) -> Response:
    response_id = request.path_params["response_id"]
    stored = await response_store.load(services, token.app_id, response_id)
    if stored is None:
        raise _not_found(response_id)
    return Response(orjson.dumps(stored.response), media_type=JSON)


async def delete(request: Request, services: Services, token: RelayToken) -> Response:
    response_id = request.path_params["response_id"]
    if not await response_store.remove(services, token.app_id, response_id):
        raise _not_found(response_id)
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return Response(orjson.dumps(body), media_type=JSON)


routes = [
    Route("/v1/responses", relay_endpoint(create), methods=["POST"]),
    Route("/v1/responses/{response_id}", relay_endpoint(retrieve), methods=["GET"]),
    Route("/v1/responses/{response_id}", relay_endpoint(delete), methods=["DELETE"]),
]
