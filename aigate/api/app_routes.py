"""Registering App API handlers under both prefixes with one authentication step.

``/bp/ai/...`` identifies the end user by a user token; ``/bp/server/user/{user_id}/ai/...``
by the app server key plus the path's user id. A handler is written once as
``async def handler(request, caller, services) -> Response`` and cannot see a request
without a resolved ``Caller``. Before the handler runs, the edge (``aigate.edge.gate``)
has checked the credentials, attestation, revocation, the failed-authentication cap and
the app's rate limits, so nothing is metered for a refused call. Client routes also
answer CORS preflights and carry the CORS headers (``aigate.api.cors``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aigate.api import cors
from aigate.api.errors import error_response
from aigate.auth.caller import Caller
from aigate.edge.gate import edge_of
from aigate.edge.streams import Slot
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


class _HoldingSlot:
    """Sends a response while holding the user's stream slot: it is given back just before
    the last bytes go out (so the client's next stream finds it free), or at the latest
    when sending ends in any way (the client went away, sending failed)."""

    def __init__(self, response: Response, slot: Slot) -> None:
        self.response = response
        self.slot = slot

    async def __call__(self, scope, receive, send) -> None:
        def send_releasing(message):  # a plain function: no extra coroutine per streamed event
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                return self._release_then_send(send, message)
            return send(message)

        try:
            await self.response(scope, receive, send_releasing)
        finally:
            self.slot.release_soon()

    async def _release_then_send(self, send, message) -> None:
        await self.slot.release()
        await send(message)


def _client_endpoint(handler: Handler, methods: list[str], stream: bool):
    async def endpoint(request: Request) -> Response | _HoldingSlot:
        services: Services = request.app.state.services
        if request.method == "OPTIONS":
            return cors.preflight(services.snapshot, request, methods)
        app = slot = None
        try:
            gate = edge_of(services)
            caller = await gate.user_caller(request)
            app = caller.app
            if stream:
                slot = await gate.open_stream(caller)
            response = await handler(request, caller, services)
        except AppError as exc:
            response = error_response(exc)
        except Exception as exc:
            response = internal_error(services, request, exc)
        response = cors.decorate(response, request.headers.get("origin"), app)
        return _HoldingSlot(response, slot) if slot is not None else response

    return endpoint


def _server_endpoint(handler: Handler):
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            caller = await edge_of(services).server_caller(request)
            return await handler(request, caller, services)
        except AppError as exc:
            return error_response(exc)
        except Exception as exc:
            return internal_error(services, request, exc)

    return endpoint


def both_prefixes(path: str, handler: Handler, methods: list[str]) -> list[Route]:
    """``path`` is relative to ``/ai``, e.g. ``/chat``. Paths ending in ``/stream`` hold a
    stream slot of the user while their response is sent."""
    stream = path.endswith("/stream")
    return [
        Route(f"/bp/ai{path}", _client_endpoint(handler, methods, stream), methods=[*methods, "OPTIONS"]),
        Route(f"/bp/server/user/{{user_id}}/ai{path}", _server_endpoint(handler), methods=methods),
    ]


def server_only(path: str, handler: Handler, methods: list[str]) -> Route:
    return Route(f"/bp/server/user/{{user_id}}{path}", _server_endpoint(handler), methods=methods)
