"""Serving the App API's contract: ``/bp/openapi.json``, ``/bp/docs`` (Swagger UI), and the
vendored Swagger UI files under a versioned URL (they never change at one URL, so browsers
may cache them for good). Nothing is loaded from a CDN: the docs work offline."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import orjson
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from aigate.api.app_openapi import build_document

SWAGGER_DIR = Path(__file__).parent / "static" / "swagger-ui"
SWAGGER_VERSION = (SWAGGER_DIR / "VERSION").read_text().strip()
SWAGGER_URL = f"/_assets/swagger-ui/{SWAGGER_VERSION}"
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def aigate_version() -> str:
    try:
        return version("aigate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def swagger_page(openapi_url: str, title: str) -> Response:
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{SWAGGER_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_URL}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_URL}/favicon-32x32.png",
    )


async def openapi_json(request: Request) -> Response:
    """Built from the serving app's own routes on first use, then kept."""
    state = request.app.state
    body = getattr(state, "app_openapi", None)
    if body is None:
        body = state.app_openapi = orjson.dumps(build_document(request.app.routes, aigate_version()))
    return Response(body, media_type="application/json")


async def docs(request: Request) -> Response:
    return swagger_page("/bp/openapi.json", "aigate App API")


async def swagger_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if request.path_params["version"] != SWAGGER_VERSION or name not in SWAGGER_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        SWAGGER_DIR / name,
        media_type=SWAGGER_FILES[name],
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


routes = [
    Route("/bp/openapi.json", openapi_json, methods=["GET"]),
    Route("/bp/docs", docs, methods=["GET"]),
    Route("/_assets/swagger-ui/{version}/{name}", swagger_asset, methods=["GET"]),
]
