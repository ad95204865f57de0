"""The Admin API (/api): a FastAPI sub-application, so it has an OpenAPI document."""

from __future__ import annotations

import json
import logging

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from aigate.api.admin.access import AuditMiddleware, require_operator
from aigate.api.admin.common import ORJSONResponse, envelope
from aigate.api.admin.routes import ROUTERS
from aigate.api.json_bounds import bounds_error
from aigate.engine.calls import RETRY_AFTER_S
from aigate.store.outage import is_outage

log = logging.getLogger("aigate.admin")


def _no_constant(name: str) -> None:
    raise ValueError(name)


async def check_input_bounds(request: Request) -> None:
    """No path or query parameter may hold NUL (PostgreSQL text cannot, so it could only
    fail a query), and every write's JSON body must fit what both databases and orjson
    round-trip (int64, finite numbers, no NUL, valid Unicode): refused here, before
    anything is committed, so no write can leave a row that breaks a later read."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and "\x00" in value:
            raise HTTPException(400, f"{name}: must not contain NUL characters")
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    raw = await request.body()  # FastAPI has read it already: this is the cached copy
    if not raw.strip():
        return
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            return  # malformed JSON: FastAPI's own validation answers it
        raise HTTPException(400, "body: must be a finite number, not NaN or Infinity") from None
    problem = bounds_error(data)
    if problem:
        raise HTTPException(400, problem)


def create_admin_app() -> FastAPI:
    api = FastAPI(
        title="aigate Admin API",
        default_response_class=ORJSONResponse,
        dependencies=[Depends(require_operator), Depends(check_input_bounds)],
        docs_url=None,  # /api/docs is the console's offline Swagger UI (aigate.console.web)
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return ORJSONResponse(envelope(None, str(exc.detail), False), status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        """A database outage is a 503 the operator may retry; anything else a 500, both
        in the envelope (the traceback goes to the log, never to the client)."""
        if is_outage(exc):
            log.warning("database unavailable in %s %s: %s", request.method, request.url.path, exc)
            return ORJSONResponse(
                envelope(None, "the database is unavailable; retry later", False),
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return ORJSONResponse(envelope(None, "internal error", False), status_code=500)

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p not in ("query", "body", "path"))
            parts.append(f"{loc}: {err['msg']}")
        return ORJSONResponse(envelope(None, "; ".join(parts), False), status_code=400)

    for router in ROUTERS:
        api.include_router(router)
    api.add_middleware(AuditMiddleware)
    return api
