"""Static files with versioned URLs: ``/console/static/<content hash>/<name>``, served
with a one-year immutable cache; a changed file gets a new URL, so no stale asset."""

from __future__ import annotations

import hashlib
import mimetypes
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

STATIC = Path(__file__).parent / "static"
LONG_CACHE = "public, max-age=31536000, immutable"


@cache
def versions() -> dict[str, str]:
    """Every static file's name (relative path) -> the first 12 hex digits of its SHA-256."""
    return {
        str(p.relative_to(STATIC)): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted(STATIC.rglob("*"))
        if p.is_file()
    }


def static_url(name: str) -> str:
    return f"/console/static/{versions()[name]}/{name}"


async def serve_static(request: Request) -> Response:
    name = request.path_params["name"]
    if versions().get(name) != request.path_params["version"]:
        return Response("not found", status_code=404, media_type="text/plain")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type.endswith("javascript"):
        media_type += "; charset=utf-8"
    return FileResponse(STATIC / name, media_type=media_type, headers={"Cache-Control": LONG_CACHE})
