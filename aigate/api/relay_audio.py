"""Audio on the relay: ``POST /v1/audio/transcriptions`` (multipart/form-data) and
``POST /v1/audio/speech`` (``aigate.engine.audio``).

An upload may be at most ``relay.audio_max_bytes`` (default 25 MiB, OpenAI's own limit):
a larger declared ``Content-Length`` is refused before reading, and a body that grows
past the limit while streaming is cut off; both answer 413 and are logged. The form
parser spools the file to disk beyond 1 MiB, so an upload never sits whole in memory.
"""

from __future__ import annotations

from typing import Any

from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from aigate.api.body import read_body
from aigate.api.relay import client_ip, relay_endpoint
from aigate.config.runtime import RelayToken
from aigate.engine import audio, relay
from aigate.engine.relay import RelayError
from aigate.errors import AppError
from aigate.services import Services


class _TooLarge(Exception):
    pass


def _limited(request: Request, limit: int):
    """The request's ``receive``, raising _TooLarge once the body passes ``limit`` bytes."""
    seen = 0

    async def receive() -> Message:
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge
        return message

    return receive


async def transcriptions(request: Request, services: Services, token: RelayToken) -> Response:
    endpoint, ip = request.url.path, client_ip(request)
    limit = services.config.relay.audio_max_bytes
    too_large = RelayError(413, f"The audio upload is larger than {limit} bytes.", param="file", code="file_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise await relay.refuse(services, token, "audio", endpoint, ip, too_large)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise await relay.refuse(
            services,
            token,
            "audio",
            endpoint,
            ip,
            RelayError(400, "The request must be multipart/form-data with a 'file' part.", param="file"),
        )
    try:
        form = await Request(request.scope, _limited(request, limit)).form(max_files=1, max_fields=50)
    except _TooLarge:
        raise await relay.refuse(services, token, "audio", endpoint, ip, too_large) from None
    except (MultiPartException, MultipartParseError) as exc:
        raise await relay.refuse(
            services,
            token,
            "audio",
            endpoint,
            ip,
            RelayError(400, f"The multipart body could not be read: {exc}", param="file"),
        ) from None
    try:
        upload = form.get("file")
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        fields["file"] = upload.filename if isinstance(upload, UploadFile) else None
        rc = await audio.begin(services, token, fields, endpoint, ip, required="file")
        assert isinstance(upload, UploadFile)  # begin refused a missing file
        body, kind = await audio.transcribe(
            rc, audio.Upload(upload.filename or "audio", upload.file, upload.content_type or "application/octet-stream")
        )
    finally:
        await form.close()  # deletes the spooled file
    return Response(body, media_type=kind, headers={"x-request-id": rc.request_id})


async def speech(request: Request, services: Services, token: RelayToken) -> Response:
    endpoint, ip = request.url.path, client_ip(request)
    try:
        raw = await read_body(request, services.config.server.max_body_bytes)
    except AppError as exc:
        raise await relay.refuse(services, token, "audio", endpoint, ip, RelayError(exc.status, exc.message)) from None
    try:
        body = relay.parse_body(raw)
    except RelayError as exc:
        raise await relay.refuse(services, token, "audio", endpoint, ip, exc) from None
    rc = await audio.begin(services, token, body, endpoint, ip, required="input")
    content, kind = await audio.speech(rc)
    return Response(content, media_type=kind, headers={"x-request-id": rc.request_id})


routes = [
    Route("/v1/audio/transcriptions", relay_endpoint(transcriptions), methods=["POST"]),
    Route("/v1/audio/speech", relay_endpoint(speech), methods=["POST"]),
]
