"""The Admin API (/api): a FastAPI sub-application, so it has an OpenAPI document."""
from __future__ import annotations

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from aigate.auth.caller import admin_ok


class ORJSONResponse(JSONResponse):
    """JSON bodies through orjson (FastAPI's own class for this is deprecated)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def envelope(data=None, message: str = "", success: bool = True) -> dict:
    return {"data": data, "message": message, "success": success}


async def require_admin(request: Request) -> None:
    services = request.app.state.services
    if not admin_ok(services.config.server.admin_key, request.headers.get("authorization")):
        raise HTTPException(status_code=401, detail="invalid or missing admin key")


def create_admin_app() -> FastAPI:
    api = FastAPI(
        title="aigate Admin API",
        default_response_class=ORJSONResponse,
        dependencies=[Depends(require_admin)],
        docs_url="/docs",
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

    from aigate.api import admin_routes

    for router in admin_routes.ROUTERS:
        api.include_router(router)
    return api
