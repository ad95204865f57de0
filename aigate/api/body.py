"""Reading request bodies: size limit and JSON parsing with errors that say what is wrong."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from aigate.api.json_bounds import bounds_error, might_hold_big_ints
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
    # orjson already refuses NaN, infinities and lone surrogates; integers beyond int64
    # (kept exact up to 2**64, or turned into floats) are looked for only when the body
    # has a number long enough to be one. Text is the user's: any character is kept.
    if might_hold_big_ints(raw):
        problem = bounds_error(data, text=False)
        if problem:
            raise invalid(problem)
    return data
