"""How the App API speaks about failed calls: upstream failures, bugs and outages."""

from __future__ import annotations

from aigate.errors import AppError
from aigate.providers.base import UpstreamError


def to_app_error(exc: UpstreamError) -> AppError:
    if exc.kind == "config":
        return AppError("config_invalid", f"strategy cannot be served: {exc.message}")
    if exc.kind == "timeout":
        return AppError("upstream_timeout", f"the upstream did not answer in time: {exc.message}")
    if not exc.retryable and exc.status in (400, 404, 413, 422):
        return AppError("invalid_parameter", f"the upstream rejected the request: {exc.message}")
    if exc.status in (401, 403):
        return AppError("upstream_error", "the upstream refused the platform's credentials")
    return AppError("upstream_error", f"every platform tried failed: {exc.message}")


class AppErrors:
    """How the App API speaks about a failed call (``aigate.engine.calls.Errors``)."""

    kind = AppError

    def upstream(self, exc: UpstreamError) -> AppError:
        return to_app_error(exc)

    def internal(self, ref: str) -> AppError:
        return AppError("internal_error", f"internal error (request_id: {ref})")

    def unavailable(self, retry_after_s: int) -> AppError:
        return AppError(
            "service_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": str(retry_after_s)},
        )


APP_ERRORS = AppErrors()
