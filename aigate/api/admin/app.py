"""The Admin API (/api): a FastAPI sub-application, so it has an OpenAPI document."""
from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from aigate.api.admin.common import ORJSONResponse, envelope
from aigate.api.admin.routes import ROUTERS
from aigate.api.app_docs import swagger_page
from aigate.auth.caller import admin_ok


async def require_admin(request: Request) -> None:
    services = request.app.state.services
    if not admin_ok(services.config.server.admin_key, request.headers.get("authorization")):
        raise HTTPException(status_code=401, detail="invalid or missing admin key")


def create_admin_app() -> FastAPI:
    api = FastAPI(
        title="aigate Admin API",
        default_response_class=ORJSONResponse,
        dependencies=[Depends(require_admin)],
        docs_url=None,  # served below from the vendored Swagger UI, not a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    async def docs(request: Request):
        return swagger_page("/api/openapi.json", "aigate Admin API")

    api.add_route("/docs", docs, include_in_schema=False)  # open, like the document itself

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
    return api
