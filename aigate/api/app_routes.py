"""Registering App API handlers under both prefixes with one authentication step.

``/bp/ai/...`` identifies the end user by a user token; ``/bp/server/user/{user_id}/ai/...``
by the app server key plus the path's user id. A handler is written once as
``async def handler(request, caller, services) -> Response`` and cannot see a request
without a resolved ``Caller``.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aigate.api.errors import error_response
from aigate.auth.caller import Caller, caller_from_server_key, caller_from_user_token
from aigate.engine.calls import RETRY_AFTER_S
from aigate.engine.upstream_errors import APP_ERRORS
from aigate.errors import AppError
from aigate.services import Services
from aigate.store.outage import is_outage

Handler = Callable[[Request, Caller, Services], Awaitable[Response]]

log = logging.getLogger("aigate.api")


def internal_error(services: Services, request: Request, exc: Exception) -> Response:
    """A database outage is a 503 the client may retry; anything else is a bug, logged with
    its traceback under a fresh id, and the client gets only the id."""
    if is_outage(exc):
        log.warning("database unavailable in %s %s: %s", request.method, request.url.path, exc)
        return error_response(APP_ERRORS.unavailable(RETRY_AFTER_S))
    ref = services.ids.next()
    log.exception("unhandled error in %s %s", request.method, request.url.path, extra={"request_id": str(ref)})
    return error_response(APP_ERRORS.internal(str(ref)))


def _client_endpoint(handler: Handler):
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            caller = caller_from_user_token(services.snapshot, request.headers.get("authorization"))
            return await handler(request, caller, services)
        except AppError as exc:
            return error_response(exc)
        except Exception as exc:
            return internal_error(services, request, exc)

    return endpoint


def _server_endpoint(handler: Handler):
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            caller = caller_from_server_key(
                services.snapshot, request.headers.get("authorization"), request.path_params["user_id"]
            )
            return await handler(request, caller, services)
        except AppError as exc:
            return error_response(exc)
        except Exception as exc:
            return internal_error(services, request, exc)

    return endpoint


def both_prefixes(path: str, handler: Handler, methods: list[str]) -> list[Route]:
    """``path`` is relative to ``/ai``, e.g. ``/chat``."""
    return [
        Route(f"/bp/ai{path}", _client_endpoint(handler), methods=methods),
        Route(f"/bp/server/user/{{user_id}}/ai{path}", _server_endpoint(handler), methods=methods),
    ]


def server_only(path: str, handler: Handler, methods: list[str]) -> Route:
    return Route(f"/bp/server/user/{{user_id}}{path}", _server_endpoint(handler), methods=methods)
