"""The Admin API (/api): a FastAPI sub-application, so it has an OpenAPI document."""
from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from aigate.api.admin.access import AuditMiddleware, require_operator
from aigate.api.admin.common import ORJSONResponse, envelope
from aigate.api.admin.routes import ROUTERS


def create_admin_app() -> FastAPI:
    api = FastAPI(
        title="aigate Admin API",
        default_response_class=ORJSONResponse,
        dependencies=[Depends(require_operator)],
        docs_url=None,  # served offline by the console package (no CDN)
        openapi_url="/openapi.json",
    )

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return ORJSONResponse(envelope(None, str(exc.detail), False), status_code=exc.status_code)

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
