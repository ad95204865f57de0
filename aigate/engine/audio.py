"""Audio on the relay (SPEC §13): ``POST /v1/audio/transcriptions`` and
``POST /v1/audio/speech`` on OpenAI-format platforms, one more flow on the call
lifecycle with the relay's routing, token limits and usage log.

Pricing: the model's ``per_request_price`` for a served call, or its input/output token
prices for the tokens the upstream reports (transcription models that count tokens;
speech input is estimated from its text). The usage-log row keeps the form fields of a
transcription, never the audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

import orjson

from aigate.config.runtime import RelayToken
from aigate.engine import relay
from aigate.engine.calls import Call
from aigate.engine.relay import RELAY_ERRORS, RelayCall, invalid
from aigate.providers import openai as oa
from aigate.providers import openai_audio
from aigate.providers.base import Platform
from aigate.services import Services

FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


@dataclass(slots=True)
class Upload:
    filename: str
    file: IO[bytes]
    content_type: str


async def begin(
    services: Services, token: RelayToken, body: dict[str, Any], endpoint: str, ip: str, *, required: str
) -> RelayCall:
    """Check the model and the token's limits; ``required`` names the field that must be
    present besides ``model`` (``file`` is checked by the caller, ``input`` here)."""
    call = Call(services, relay.new_record(services, token, "audio", endpoint, ip, orjson.dumps(body)), RELAY_ERRORS)
    rc = RelayCall(call, token, body)
    async with call.ending():
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("You must provide a model parameter.", "model", "missing_required_parameter")
        call.record.model = model
        value = body.get(required)
        if value is None or value == "":
            raise invalid(f"Missing required parameter: '{required}'.", required, "missing_required_parameter")
        fmt = body.get("response_format")
        if required == "file" and fmt is not None and fmt not in FORMATS:
            raise invalid(f"'response_format' must be one of {list(FORMATS)}.", "response_format")
        # speech and transcription speak OpenAI's audio API: its platforms, as embeddings
        await relay.admit(rc, model, "audio")
    return rc


async def transcribe(rc: RelayCall, upload: Upload) -> tuple[bytes, str]:
    """(body, content type) of the transcription."""
    services, call, record = rc.services, rc.call, rc.record

    async def attempt(platform: Platform, model: str):
        fields = [(k, str(v)) for k, v in rc.body.items() if k not in ("model", "file")]
        fields.insert(0, ("model", platform.upstream_model(model)))
        return await openai_audio.transcribe(
            services.http, platform, fields, upload.filename, upload.file, upload.content_type
        )

    async with call.ending():
        raw, kind, usage = await call.route(relay.candidates(rc), attempt)
        record.usage, record.response_raw = usage, raw
        await call.succeed()
    return raw, kind


async def speech(rc: RelayCall) -> tuple[bytes, str]:
    """(audio, content type) of the speech."""
    services, call, record = rc.services, rc.call, rc.record

    async def attempt(platform: Platform, model: str):
        upstream = platform.upstream_model(model)
        body = rc.body if upstream == model else {**rc.body, "model": upstream}
        return await oa.speech(services.http, platform, body)

    async with call.ending():
        result = await call.route(relay.candidates(rc), attempt)
        record.usage = result.usage
        record.response_raw = orjson.dumps({"content_type": result.content_type, "bytes": len(result.content)})
        await call.succeed()
    return result.content, result.content_type
