"""Domain errors: what went wrong, in the App API's vocabulary (seed 002 ``error_type``),
with no HTTP in it. The API edge (``aigate.api.errors``) turns them into responses.

    AppError                 one error type of SPEC §5, with its HTTP status
      └ error_type           invalid_parameter, unauthorized, item_not_found, ...
"""

from __future__ import annotations

# Every error type the App API can answer, with its HTTP status. The App API's OpenAPI
# document is generated from this table, so a type added here is documented by itself.
STATUS: dict[str, int] = {
    "invalid_parameter": 400,
    "config_invalid": 400,
    "unauthorized": 401,
    "insufficient_asset": 402,
    "item_not_found": 404,
    "payload_too_large": 413,
    "limit_exceeded": 429,
    "internal_error": 500,
    "upstream_error": 502,
    "service_unavailable": 503,
    "upstream_timeout": 504,
}


class AppError(Exception):
    """An error the App API reports as ``{"error": {"error_type", "message"}}``.
    ``headers`` carries what the response must add (``Retry-After``)."""

    def __init__(
        self,
        error_type: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or STATUS[error_type]
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"error_type": self.error_type, "message": self.message}}


def invalid(message: str) -> AppError:
    return AppError("invalid_parameter", message)


def not_found(message: str) -> AppError:
    return AppError("item_not_found", message)


def unauthorized(message: str) -> AppError:
    return AppError("unauthorized", message)
