"""OpenAI and Azure OpenAI wire formats: chat, embeddings, images, speech, models.

A forced tool call's arguments and a ``json_schema`` answer follow their schema
(``aigate.simulator.schema_instance``). Usage arithmetic follows OpenAI: ``prompt_tokens`` includes ``cached_tokens`` and
``completion_tokens`` includes ``reasoning_tokens`` (both reported in the details).
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from aigate.simulator import schema_instance, text
from aigate.simulator.switches import RequestError

if TYPE_CHECKING:
    from aigate.simulator.server import Call

FINGERPRINT = "aigate-simulator"
SSE_TYPE = "text/event-stream"
DONE_FRAME = b"data: [DONE]\n\n"
MALFORMED_FRAME = b'data: {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choi\n\n'
IMAGE_URL = "https://simulator.invalid/images/{}.png"
DEFAULT_EMBEDDING_DIMENSIONS = 8
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "dall-e-3",
    "gpt-image-1",
    "tts-1",
    "gpt-4o-mini-tts",
)

# status -> (type, code), as OpenAI reports them
ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "service_unavailable"),
}


def bearer_key(request: web.Request) -> str:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


class OpenAIDialect:
    """``Authorization: Bearer`` auth and ``{"error": {message, type, param, code}}``."""

    def precheck(self, call: Call) -> web.Response | None:
        return check_key(call, bearer_key(call.request))

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        kind, default_code = ERROR_KINDS.get(
            status,
            ("server_error", "server_error") if status >= 500 else ("invalid_request_error", "invalid_request_error"),
        )
        error = {"message": message, "type": kind, "param": param, "code": code or default_code}
        return orjson.dumps({"error": error})


def check_key(call: Call, key: str) -> web.Response | None:
    """401 for a missing key, or for a wrong one when the server requires a key."""
    if not key:
        return call.error(401, "You didn't provide an API key (simulated).", "invalid_api_key")
    required = call.state.require_key
    if required is not None and key != required:
        return call.error(401, "Incorrect API key provided (simulated).", "invalid_api_key")
    return None


class AzureDialect:
    """``api-key`` (or Bearer) auth, required ``?api-version=``, ``{"error": {code, message}}``."""

    def precheck(self, call: Call) -> web.Response | None:
        key = call.request.headers.get("api-key", "") or bearer_key(call.request)
        required = call.state.require_key
        if not key or (required is not None and key != required):
            message = (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource. (simulated)"
            )
            return call.error(401, message, "401")
        if not call.request.query.get("api-version"):
            message = "The api-version query parameter (?api-version=) is required for all requests."
            return call.error(400, message, "MissingApiVersionParameter")
        return None

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        return orjson.dumps({"error": {"code": code or str(status), "message": message}})


OPENAI = OpenAIDialect()
AZURE = AzureDialect()


def _model(call: Call, body: dict[str, Any]) -> str:
    deployment = call.request.match_info.get("deployment")
    if deployment:
        return deployment  # Azure answers with the deployment name
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", "model")
    return model


# --- chat completions -------------------------------------------------------------------


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(text.part_texts(message.get("content")))
    return ""


def _prompt_tokens(messages: list[Any]) -> int:
    return text.prompt_tokens(text.part_texts(m.get("content")) if isinstance(m, dict) else () for m in messages)


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The function the request forces (``tool_choice`` required or named), if any."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) and name else "function"
    if choice == "required":
        function = tools[0].get("function") if isinstance(tools[0], dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) and name else "function"
    return None


def _parameters(body: dict[str, Any], name: str) -> dict[str, Any]:
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name") == name:
            schema = function.get("parameters")
            return schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "object"}


def _usage(prompt: int, completion: int, call: Call) -> dict[str, Any]:
    sw = call.switches
    completion += sw.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": sw.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": sw.reasoning_tokens},
    }


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": text.new_id("call_sim"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def json_mode_reply(call: Call, fmt: Any, user_text: str) -> str:
    """The reply text; JSON for ``json_object``, an instance of the schema for
    ``json_schema`` (``{"type": "json_schema", "json_schema": {"schema": ...}}``)."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema" and call.switches.reply is None:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        value = schema_instance.instance(schema, text.echo_reply(user_text))
        return orjson.dumps(value).decode()
    return text.make_reply(call.switches.reply, user_text, kind in ("json_object", "json_schema"))


async def chat_completions(call: Call) -> web.StreamResponse:
    body = call.body_object()
    model = _model(call, body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array", "messages")
    prompt = _prompt_tokens(messages)
    tool = _forced_tool(body)
    if tool is not None:  # the arguments follow the function's parameters schema
        echo = text.make_reply(call.switches.reply, _last_user_text(messages))
        arguments = schema_instance.instance(_parameters(body, tool), echo)
        reply, finish = orjson.dumps(arguments).decode(), "tool_calls"
        completion = text.count_tokens(tool + reply)
    else:
        reply = json_mode_reply(call, body.get("response_format"), _last_user_text(messages))
        finish, completion = "stop", text.count_tokens(reply)
    if call.stream:
        return await _stream_chat(call, model, tool, reply, finish, prompt, completion)
    if tool is not None:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [_tool_call(tool, reply)],
            "refusal": None,
        }
    else:
        message = {"role": "assistant", "content": reply, "refusal": None}
    data: dict[str, Any] = {
        "id": text.new_id("chatcmpl-sim"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "system_fingerprint": FINGERPRINT,
    }
    if call.switches.usage:
        data["usage"] = _usage(prompt, completion, call)
    return call.json(data)


async def _stream_chat(
    call: Call, model: str, tool: str | None, reply: str, finish: str, prompt: int, completion: int
) -> web.StreamResponse:
    body = call.body
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    base: dict[str, Any] = {
        "id": text.new_id("chatcmpl-sim"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    pieces = text.split_chunks(reply, call.switches.chunks)
    if tool is not None:
        first_call = {"index": 0, **_tool_call(tool, "")}
        head = [frame({"role": "assistant", "content": None, "tool_calls": [first_call]})]
        content = [frame({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces]
    else:
        head = [frame({"role": "assistant", "content": ""})]
        content = [frame({"content": piece}) for piece in pieces]
    tail = [frame({}, finish)]
    if include_usage and call.switches.usage:
        usage_chunk = {**base, "choices": [], "usage": _usage(prompt, completion, call)}
        tail.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    tail.append(DONE_FRAME)

    def error() -> bytes:
        status = call.switches.status or 500
        return b"data: " + call.dialect.error_body(status, text.fault_message(status)) + b"\n\n"

    return await call.send_stream(SSE_TYPE, head, content, tail, MALFORMED_FRAME, error)


# --- embeddings ---------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) for item in value):  # one input given as token ids
            return [" ".join(map(str, value))]
        if all(isinstance(item, str) for item in value):
            return value
        if all(isinstance(item, list) for item in value):  # several inputs as token ids
            return [" ".join(map(str, item)) for item in value]
    raise RequestError("'input' must be a string or a non-empty array", "input")


def _dimensions(value: Any) -> int:
    if value is None:
        return DEFAULT_EMBEDDING_DIMENSIONS
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8192:
        return value
    raise RequestError("'dimensions' must be an integer between 1 and 8192", "dimensions")


async def embeddings(call: Call) -> web.Response:
    body = call.body_object()
    model = _model(call, body)
    inputs = _embedding_inputs(body.get("input"))
    dimensions = _dimensions(body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector: Any = text.embedding_vector(item, dimensions)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(text.count_tokens(item) for item in inputs)
    result: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if call.switches.usage:
        result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return call.json(result)


# --- images -------------------------------------------------------------------------------


def _tiny_png() -> bytes:
    """A valid 1x1 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x5b\x8c\xd6")  # filter byte + one RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG_BYTES = _tiny_png()
PNG_B64 = base64.b64encode(PNG_BYTES).decode()


async def images_generations(call: Call) -> web.Response:
    body = call.body_object()
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RequestError("'prompt' is required", "prompt")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise RequestError("'n' must be an integer between 1 and 10", "n")
    fmt = body.get("response_format") or "url"
    if fmt not in ("url", "b64_json"):
        raise RequestError("'response_format' must be 'url' or 'b64_json'", "response_format")
    revised = f"Simulated image (aigate provider simulator): {text.strip_directives(prompt)}"
    data = []
    for _ in range(n):
        item = {"b64_json": PNG_B64} if fmt == "b64_json" else {"url": IMAGE_URL.format(text.new_id("img_sim"))}
        item["revised_prompt"] = revised
        data.append(item)
    return call.json({"created": int(time.time()), "data": data})


# --- speech -------------------------------------------------------------------------------


def _wav(samples: int = 240, rate: int = 24000) -> bytes:
    """A short mono 16-bit PCM WAV of silence."""
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 417-byte frames
_MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
SPEECH: dict[str, tuple[str, bytes]] = {
    "mp3": ("audio/mpeg", _MP3_FRAME * 2),
    "wav": ("audio/wav", _wav()),
    "pcm": ("audio/pcm", bytes(480)),
    "opus": ("audio/opus", b"OggS\x00\x02" + bytes(250)),
    "aac": ("audio/aac", b"\xff\xf1\x50\x80\x21\xff\xfc" + bytes(250)),
    "flac": ("audio/flac", b"fLaC\x00\x00\x00\x22" + bytes(250)),
}


async def audio_speech(call: Call) -> web.Response:
    body = call.body_object()
    _model(call, body)
    if not isinstance(body.get("input"), str) or not body["input"]:
        raise RequestError("'input' is required", "input")
    fmt = body.get("response_format") or "mp3"
    if fmt not in SPEECH:
        raise RequestError(f"'response_format' must be one of {sorted(SPEECH)}", "response_format")
    content_type, audio = SPEECH[fmt]
    return call.binary(audio, content_type)


# --- models -------------------------------------------------------------------------------

MODELS_BODY = {
    "object": "list",
    "data": [{"id": name, "object": "model", "created": 1700000000, "owned_by": "aigate-simulator"} for name in MODELS],
}


async def list_models(call: Call) -> web.Response:
    return call.json(MODELS_BODY)


_AZURE = "/openai/deployments/{deployment}"
ROUTES = [
    ("POST", "/v1/chat/completions", OPENAI, chat_completions, False),
    ("POST", "/v1/embeddings", OPENAI, embeddings, False),
    ("POST", "/v1/images/generations", OPENAI, images_generations, False),
    ("POST", "/v1/audio/speech", OPENAI, audio_speech, False),
    ("GET", "/v1/models", OPENAI, list_models, False),
    ("POST", _AZURE + "/chat/completions", AZURE, chat_completions, False),
    ("POST", _AZURE + "/embeddings", AZURE, embeddings, False),
    ("POST", _AZURE + "/images/generations", AZURE, images_generations, False),
    ("POST", _AZURE + "/audio/speech", AZURE, audio_speech, False),
]
