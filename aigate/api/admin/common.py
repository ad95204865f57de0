"""Shared pieces of the Admin API CRUD routers: the typed envelope, errors, masking and
the one way to write configuration (a transaction that bumps the version, then a reload
that every instance hears about)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.config.apply import bump_version
from aigate.config.loader import format_path
from aigate.services import Services

log = logging.getLogger("aigate.admin")

T = TypeVar("T")


class ORJSONResponse(JSONResponse):
    """JSON bodies through orjson (FastAPI's own class for this is deprecated)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def envelope(data=None, message: str = "", success: bool = True) -> dict:
    return {"data": data, "message": message, "success": success}


class Envelope(BaseModel, Generic[T]):
    """Every Admin API response: ``{"data", "message", "success"}``."""

    data: T | None = None
    message: str = ""
    success: bool = True


class ErrorEnvelope(BaseModel):
    data: None = None
    message: str
    success: bool = False


# Documented on every CRUD router so the OpenAPI document shows the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Invalid body; the message names each field"},
    401: {"model": ErrorEnvelope, "description": "Missing or wrong admin key"},
    404: {"model": ErrorEnvelope, "description": "Unknown app or object"},
    409: {"model": ErrorEnvelope, "description": "Conflicts with existing objects"},
}


def ok(data: Any = None) -> dict[str, Any]:
    return {"data": data, "message": "", "success": True}


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


def invalid(errors: list[str] | str) -> HTTPException:
    """A 400 whose message lists every problem as ``path: message``."""
    if isinstance(errors, str):
        errors = [errors]
    return HTTPException(status_code=400, detail="; ".join(errors))


def object_errors(errors: list[str]) -> list[str]:
    """The loader's checks prefix paths with the object's place in the file; an object
    sent on its own has no prefix, so drop the leading separator."""
    return [e.removeprefix(".") for e in errors]


def validation_messages(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "missing":
            msg = "field required"
        out.append(f"{format_path(err['loc']) or '(body)'}: {msg}")
    return out


def validate_as(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_messages(exc)) from None


def check_name(name: str, body_name: str | None, field: str = "name") -> None:
    if body_name != name:
        raise invalid(f"{field}: must match the path ('{name}')")


def mask(secret: str) -> str:
    """Enough of a secret to recognise it, never enough to use it: ``sk-…abcd``."""
    if not secret:
        return ""
    if len(secret) < 12:
        return "…"
    return f"{secret[:3]}…{secret[-4:]}"


def page_bounds(page: int, per_page: int) -> tuple[int, int]:
    return per_page, (page - 1) * per_page


@contextlib.asynccontextmanager
async def config_change(services: Services) -> AsyncIterator[AsyncConnection]:
    """One transaction for the rows of a configuration change plus the version bump;
    after the commit this instance reloads and tells the others (Redis), and the
    version poll is the safety net if that message is lost."""
    try:
        async with services.engine.begin() as conn:
            yield conn
            await bump_version(conn)
    except IntegrityError:
        raise conflict("conflicts with an existing object (duplicate name or key)") from None
    try:
        await services.cache.changed()
    except Exception:  # committed already; the version poll picks it up
        log.warning("configuration reload/publish failed", exc_info=True)
