"""The App API error object (seed 002) and the exceptions that produce it."""
from __future__ import annotations

import orjson
from starlette.responses import Response

STATUS = {
    "invalid_parameter": 400,
    "config_invalid": 400,
    "unauthorized": 401,
    "insufficient_asset": 402,
    "item_not_found": 404,
    "payload_too_large": 413,
    "limit_exceeded": 429,
    "internal_error": 500,
    "upstream_error": 502,
    "upstream_timeout": 504,
}


class AppError(Exception):
    """An error the App API reports as ``{"error": {"error_type", "message"}}``."""

    def __init__(self, error_type: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or STATUS[error_type]

    def body(self) -> dict:
        return {"error": {"error_type": self.error_type, "message": self.message}}

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()), status_code=self.status, media_type="application/json"
        )


def invalid(message: str) -> AppError:
    return AppError("invalid_parameter", message)


def not_found(message: str) -> AppError:
    return AppError("item_not_found", message)


def unauthorized(message: str) -> AppError:
    return AppError("unauthorized", message)
