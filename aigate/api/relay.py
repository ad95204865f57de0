"""The OpenAI-compatible relay (/v1): authentication and HTTP framing.

A relay token is presented as ``Authorization: Bearer sk-...`` or, as Azure clients do,
an ``api-key`` header. Missing, unknown, disabled and expired tokens get OpenAI's 401
``invalid_api_key`` and are counted in metrics, not logged row by row (SPEC §8); every
request with a valid token is logged by ``aigate.engine.relay``. Errors are always
OpenAI's ``{"error": {message, type, param, code}}`` so the SDK raises its usual classes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aigate import metrics
from aigate.api.body import read_body
from aigate.api.event_stream import EventStream
from aigate.auth.caller import relay_token
from aigate.clock import now_ms
from aigate.config.runtime import RelayToken
from aigate.edge.gate import edge_of
from aigate.engine import relay
from aigate.engine.relay import RelayError
from aigate.errors import AppError
from aigate.services import Services

JSON = "application/json"

Handler = Callable[[Request, Services, RelayToken], Awaitable[Response]]


log = logging.getLogger("aigate.relay")


def _refuse(message: str) -> RelayError:
    metrics.UNAUTHENTICATED.labels("relay").inc()
    return RelayError(401, message, code="invalid_api_key")


def _presented_key(request: Request) -> str:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return request.headers.get("api-key", "").strip()


def authenticate(services: Services, request: Request) -> RelayToken:
    key = _presented_key(request)
    if not key:
        raise _refuse(
            "You didn't provide an API key. Provide it in an Authorization header "
            "using Bearer auth (Authorization: Bearer YOUR_KEY) or an api-key header."
        )
    token = relay_token(services.snapshot, key)
    if token is None:
        raise _refuse("Incorrect API key provided.")
    if token.expires_ms is not None and token.expires_ms <= now_ms():
        raise _refuse("The API key provided has expired.")
    return token


def error_response(exc: RelayError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type=JSON, headers=exc.headers)


def relay_endpoint(handler: Handler):
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            return await handler(request, services, authenticate(services, request))
        except RelayError as exc:
            return error_response(exc)
        except Exception:  # a bug: logged with its traceback, the client gets only an id
            ref = services.ids.next()
            log.exception("unhandled error in %s", request.url.path, extra={"request_id": str(ref)})
            return error_response(RelayError(500, f"internal error (request_id: {ref})", "server_error"))

    return endpoint


def client_ip(request: Request) -> str:
    """The client's address as the edge sees it (``server.trusted_proxies`` honoured)."""
    return edge_of(request.app.state.services).client_ip(request)


async def _begin(request: Request, services: Services, token: RelayToken, module: str) -> relay.RelayCall:
    endpoint, ip = request.url.path, client_ip(request)
    try:
        raw = await read_body(request, services.config.server.max_body_bytes)
    except AppError as exc:  # too large: refused, and logged like every refusal
        raise await relay.refuse(services, token, module, endpoint, ip, RelayError(exc.status, exc.message)) from None
    return await relay.begin(services, token, raw, module, endpoint, ip)


def _answer(body: bytes, call: relay.RelayCall) -> Response:
    return Response(body, media_type=JSON, headers={"x-request-id": call.request_id})


async def chat_completions(request: Request, services: Services, token: RelayToken) -> Response:
    call = await _begin(request, services, token, "chat")
    if not call.stream:
        return _answer(await relay.complete(call), call)
    frames = await relay.open_stream(call)
    return EventStream(frames, {"x-request-id": call.request_id})


async def embeddings(request: Request, services: Services, token: RelayToken) -> Response:
    call = await _begin(request, services, token, "embedding")
    return _answer(await relay.embeddings(call), call)


async def images_generations(request: Request, services: Services, token: RelayToken) -> Response:
    call = await _begin(request, services, token, "image")
    return _answer(await relay.images(call), call)


async def list_models(request: Request, services: Services, token: RelayToken) -> Response:
    return Response(orjson.dumps(relay.models(services.snapshot, token)), media_type=JSON)


async def get_model(request: Request, services: Services, token: RelayToken) -> Response:
    name = request.path_params["model"]
    return Response(orjson.dumps(relay.model(services.snapshot, token, name)), media_type=JSON)


routes = [
    Route("/v1/chat/completions", relay_endpoint(chat_completions), methods=["POST"]),
    Route("/v1/embeddings", relay_endpoint(embeddings), methods=["POST"]),
    Route("/v1/images/generations", relay_endpoint(images_generations), methods=["POST"]),
    Route("/v1/models", relay_endpoint(list_models), methods=["GET"]),
    Route("/v1/models/{model:path}", relay_endpoint(get_model), methods=["GET"]),
]
