"""OpenAI speech to text: ``POST {base}/audio/transcriptions`` (multipart/form-data).

The audio is streamed from the file object the caller hands over (rewound for every
attempt, so a retry on another platform sends it again whole). The answer is returned
as received: JSON for ``json``/``verbose_json``, text for ``text``/``srt``/``vtt``.
Usage: OpenAI reports tokens for the ``gpt-4o-*-transcribe`` models
(``{"type": "tokens", input_tokens, output_tokens}``) and seconds of audio for
``whisper-1`` (``{"type": "duration", "seconds"}``, which has no token price: such
models are priced per request).
"""

from __future__ import annotations

import io
from typing import IO, Any

import aiohttp
import orjson

from .base import Platform, Usage
from .http import open_response, read_body
from .openai import endpoint


class _Borrowed(io.RawIOBase):
    """A view of the caller's file that aiohttp may close after sending without closing
    the file itself, so a retry can send it again."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def parse_usage(raw: bytes, content_type: str) -> Usage:
    if "json" not in content_type:
        return Usage()
    try:
        u = orjson.loads(raw).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return Usage()
    if not isinstance(u, dict) or u.get("type") != "tokens":
        return Usage()
    return Usage(input_tokens=u.get("input_tokens") or 0, output_tokens=u.get("output_tokens") or 0)


async def transcribe(
    session: aiohttp.ClientSession,
    platform: Platform,
    fields: list[tuple[str, str]],
    filename: str,
    file: IO[bytes],
    content_type: str,
) -> tuple[bytes, str, Usage]:
    """(body, content type, usage) of one transcription; ``fields`` go as form fields
    (``model`` already mapped)."""
    model = next((value for name, value in fields if name == "model"), None)
    url, headers = endpoint(platform, "/audio/transcriptions", model)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    file.seek(0)
    form = aiohttp.FormData()
    for name, value in fields:
        form.add_field(name, value)
    form.add_field("file", _Borrowed(file), filename=filename, content_type=content_type)
    body: Any = form  # aiohttp streams the form (and the file) itself
    resp = await open_response(session, platform, "POST", url, headers=headers, body=body)
    try:
        raw = await read_body(resp, platform)
        kind = resp.headers.get("Content-Type", "application/json")
    finally:
        resp.release()
    return raw, kind, parse_usage(raw, kind)
