"""Turning a failed upstream call into the App API's error."""
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
