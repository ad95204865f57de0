"""Reading request bodies: size limit and JSON parsing with errors that say what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from aigate.api.json_bounds import INT64_MAX, INT64_MIN
from aigate.errors import AppError, invalid


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise AppError("payload_too_large", f"body: larger than {max_bytes} bytes", 413)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise AppError("payload_too_large", f"body: larger than {max_bytes} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise invalid("body: a JSON object is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"body: malformed JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise invalid("body: must be a JSON object")
    # orjson already refuses NaN, infinities and lone surrogates, and turns integers
    # beyond 2**64 into floats; an integer field between int64 and 2**64 would overflow
    # its column, so it is a 400. (Deeper values, e.g. template parameters, are data
    # that round-trips as it is; text is the user's: any character is kept.)
    for name, value in data.items():
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            raise invalid(f"{name}: integer out of range (must fit in 64 bits)")
    return data
