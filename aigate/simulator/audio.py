"""OpenAI speech to text: ``POST /v1/audio/transcriptions`` (multipart/form-data).

Fields: ``file`` (required), ``model`` (required), ``response_format`` (``json``
default, ``text``, ``srt``, ``vtt``, ``verbose_json``), ``language``, ``prompt``.

The transcript is ``"Simulated transcription (aigate provider simulator) of <filename>,
<duration> s."`` (the ``reply`` switch replaces it). The duration is read from a WAV
header, else estimated at 16,000 bytes a second. Usage follows OpenAI: ``whisper-1``
reports ``{"type": "duration", "seconds"}``; other models (``gpt-4o-transcribe``, ...)
report tokens: ``audio_tokens = ceil(seconds * 10)`` input and ``count_tokens`` of the
transcript output.
"""

from __future__ import annotations

import math
import struct
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aigate.simulator import text
from aigate.simulator.openai import OPENAI
from aigate.simulator.switches import RequestError

if TYPE_CHECKING:
    from aigate.simulator.server import Call

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
BYTES_PER_SECOND = 16000
RAW_KEY = web.RequestKey("aigate_simulator_raw", bytes)  # the raw body, for form parsing


def form_fields(call: Call) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """(text fields, files as name -> (filename, bytes)) of a multipart body."""
    content_type = call.request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise RequestError("the request must be multipart/form-data")
    raw = call.request.get(RAW_KEY, b"")
    message: Message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, files


def wav_seconds(data: bytes) -> float | None:
    """The duration of a PCM WAV file, or None when ``data`` is not one."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, byte_rate, size = 12, 0, 0
    while offset + 8 <= len(data):
        kind, length = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if kind == b"fmt " and length >= 16:
            byte_rate = struct.unpack("<I", data[offset + 16 : offset + 20])[0]
        elif kind == b"data":
            size = min(length, len(data) - offset - 8)
            break
        offset += 8 + length + (length & 1)
    return size / byte_rate if byte_rate else None


def _timestamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


async def transcriptions(call: Call) -> web.Response:
    fields, files = form_fields(call)
    if "file" not in files:
        raise RequestError("Missing required parameter: 'file'.", "file")
    model = fields.get("model")
    if not model:
        raise RequestError("Missing required parameter: 'model'.", "model")
    fmt = fields.get("response_format") or "json"
    if fmt not in FORMATS:
        raise RequestError(f"'response_format' must be one of {list(FORMATS)}", "response_format")
    filename, audio = files["file"]
    if not audio:
        raise RequestError("The audio file is empty.", "file")
    seconds = wav_seconds(audio) or len(audio) / BYTES_PER_SECOND
    seconds = round(seconds, 3)
    transcript = call.switches.reply or (
        f"Simulated transcription (aigate provider simulator) of {filename}, {seconds} s."
    )
    if fmt == "text":
        return call.binary(transcript.encode(), "text/plain")
    if fmt in ("srt", "vtt"):
        separator = "," if fmt == "srt" else "."
        cue = f"{_timestamp(0, separator)} --> {_timestamp(seconds, separator)}\n{transcript}\n"
        body = f"1\n{cue}" if fmt == "srt" else f"WEBVTT\n\n{cue}"
        return call.binary(body.encode(), "text/plain")
    usage: dict[str, Any]
    if model.startswith("whisper"):
        usage = {"type": "duration", "seconds": math.ceil(seconds)}
    else:
        audio_tokens = math.ceil(seconds * 10)
        output = text.count_tokens(transcript)
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "output_tokens": output,
            "total_tokens": audio_tokens + output,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        }
    if fmt == "verbose_json":
        data: dict[str, Any] = {
            "language": fields.get("language") or "english",
            "duration": seconds,
            "text": transcript,
            "segments": [
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": seconds,
                    "text": transcript,
                    "tokens": [],
                    "temperature": 0.0,
                    "avg_logprob": -0.1,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.0,
                }
            ],
            "usage": {"type": "duration", "seconds": math.ceil(seconds)},
        }
        return call.json(data)
    data = {"text": transcript}
    if call.switches.usage:
        data["usage"] = usage
    return call.json(data)


ROUTES = [("POST", "/v1/audio/transcriptions", OPENAI, transcriptions, False)]
