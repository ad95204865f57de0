"""The App API's error response (seed 002): a domain ``AppError`` rendered as JSON."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from aigate.errors import AppError


def error_response(err: AppError) -> Response:
    return Response(
        orjson.dumps(err.body()),
        status_code=err.status,
        media_type="application/json",
        headers=err.headers or None,
    )
