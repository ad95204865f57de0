"""The Anthropic Messages API on the relay: ``POST /v1/messages`` (stream or not) and
``POST /v1/messages/count_tokens`` (``aigate.engine.messages``).

The relay token is accepted as ``x-api-key`` (the anthropic SDK's default) or as
``Authorization: Bearer``. Every error on these paths is in Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}``, with the relay's statuses, so the
anthropic SDK raises its usual classes; responses carry ``request-id`` (and
``x-request-id``), the usage log row's id.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aigate import metrics
from aigate.api.body import read_body
from aigate.api.event_stream import EventStream
from aigate.api.relay import JSON, client_ip
from aigate.auth.caller import relay_token
from aigate.clock import now_ms
from aigate.config.runtime import RelayToken
from aigate.engine import messages, relay
from aigate.engine.relay import RelayError
from aigate.errors import AppError
from aigate.providers.messages_chat import error_document
from aigate.services import Services

log = logging.getLogger("aigate.relay")


def _refuse(message: str) -> RelayError:
    metrics.UNAUTHENTICATED.labels("relay").inc()
    return RelayError(401, message)


def authenticate(services: Services, request: Request) -> RelayToken:
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise _refuse("x-api-key header is required")
    token = relay_token(services.snapshot, key)
    if token is None:
        raise _refuse("invalid x-api-key")
    if token.expires_ms is not None and token.expires_ms <= now_ms():
        raise _refuse("the API key has expired")
    return token


def error_response(exc: RelayError) -> Response:
    return Response(
        orjson.dumps(error_document(exc.status, exc.message)),
        status_code=exc.status,
        media_type=JSON,
        headers=exc.headers,
    )


async def _read(request: Request, services: Services, token: RelayToken) -> bytes:
    try:
        return await read_body(request, services.config.server.max_body_bytes)
    except AppError as exc:  # too large: refused, and logged like every refusal
        raise await relay.refuse(
            services, token, "chat", request.url.path, client_ip(request), RelayError(exc.status, exc.message)
        ) from None


async def _create(request: Request, services: Services, token: RelayToken) -> Response:
    raw = await _read(request, services, token)
    rc = await messages.begin(services, token, raw, request.url.path, client_ip(request))
    ids = {"request-id": rc.request_id, "x-request-id": rc.request_id}
    beta = request.headers.get("anthropic-beta", "")
    if not rc.stream:
        return Response(await messages.complete(rc, beta), media_type=JSON, headers=ids)
    frames = await messages.open_stream(rc, beta)
    return EventStream(frames, ids)


async def _count(request: Request, services: Services, token: RelayToken) -> Response:
    raw = await _read(request, services, token)
    rc = await messages.begin(services, token, raw, request.url.path, client_ip(request), counting=True)
    ids = {"request-id": rc.request_id, "x-request-id": rc.request_id}
    beta = request.headers.get("anthropic-beta", "")
    return Response(await messages.count_tokens(rc, beta), media_type=JSON, headers=ids)


def relay_endpoint(handler):
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            return await handler(request, services, authenticate(services, request))
        except RelayError as exc:
            return error_response(exc)
        except Exception:  # a bug: logged with its traceback, the client gets only an id
            ref = services.ids.next()
            log.exception("unhandled error in %s", request.url.path, extra={"request_id": str(ref)})
            return error_response(RelayError(500, f"internal error (request_id: {ref})"))

    return endpoint


routes = [
    Route("/v1/messages", relay_endpoint(_create), methods=["POST"]),
    Route("/v1/messages/count_tokens", relay_endpoint(_count), methods=["POST"]),
]
