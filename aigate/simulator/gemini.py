"""Gemini (Generative Language API) wire format under ``/v1beta/models/{model}:<method>``
(and the same under ``/v1``).

Usage arithmetic follows Gemini: ``promptTokenCount`` includes
``cachedContentTokenCount``; ``thoughtsTokenCount`` is separate from
``candidatesTokenCount`` and counted in ``totalTokenCount``. The optional counts appear
only when non-zero.

JSON mode: ``responseMimeType: application/json`` with ``responseJsonSchema`` (or
``responseSchema``) answers an instance of the schema, and a forced function call's
``args`` follow its declared parameters (``aigate.simulator.schema_instance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from aigate.simulator import schema_instance, text
from aigate.simulator.switches import RequestError

if TYPE_CHECKING:
    from aigate.simulator.server import Call

SSE_TYPE = "text/event-stream"
JSON_TYPE = "application/json"
MALFORMED_SSE = b'data: {"candidates": [{"content": {"parts": [{"te\n\n'
MALFORMED_ARRAY = b',\r\n{"candidates": [{"content": {"parts": [{"te'
DEFAULT_EMBEDDING_DIMENSIONS = 8

STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiDialect:
    """``x-goog-api-key`` header or ``?key=``; ``{"error": {code, message, status}}``.

    A missing key is 403 PERMISSION_DENIED; a wrong one (with ``require_key``) is
    401 UNAUTHENTICATED.
    """

    def precheck(self, call: Call) -> web.Response | None:
        request = call.request
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API. (simulated)"
            )
            return call.error(403, message)
        required = call.state.require_key
        if required is not None and key != required:
            return call.error(401, "API key not valid. Please pass a valid API key. (simulated)")
        return None

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        name = code or STATUSES.get(status) or ("INTERNAL" if status >= 500 else "UNKNOWN")
        return orjson.dumps({"error": {"code": status, "message": message, "status": name}})


GEMINI = GeminiDialect()


def _part_texts(content: Any) -> Iterator[str]:
    if not isinstance(content, dict):
        return
    parts = content.get("parts")
    if not isinstance(parts, list):
        return
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            yield part["text"]


def _contents(body: dict[str, Any]) -> list[Any]:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RequestError("* GenerateContentRequest.contents: contents is not specified")
    return contents


def _prompt_tokens(body: dict[str, Any], contents: list[Any]) -> int:
    conversation = [_part_texts(content) for content in contents]
    if body.get("systemInstruction"):
        conversation.append(_part_texts(body["systemInstruction"]))
    return text.prompt_tokens(conversation)


def _last_user_text(contents: list[Any]) -> str:
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return " ".join(_part_texts(content))
    return ""


def _forced_function(body: dict[str, Any]) -> str | None:
    """The function ``toolConfig.functionCallingConfig.mode == ANY`` forces, if any."""
    tool_config = body.get("toolConfig")
    config = tool_config.get("functionCallingConfig") if isinstance(tool_config, dict) else None
    if not isinstance(config, dict) or config.get("mode") != "ANY":
        return None
    allowed = config.get("allowedFunctionNames")
    if isinstance(allowed, list) and allowed:
        return str(allowed[0])
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for declaration in declarations if isinstance(declarations, list) else []:
            if isinstance(declaration, dict) and declaration.get("name"):
                return str(declaration["name"])
    return "function"


def _declared_schema(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A function declaration's ``parameters`` (or ``parametersJsonSchema``); an empty
    object schema when the function is not declared."""
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for declaration in declarations if isinstance(declarations, list) else []:
            if isinstance(declaration, dict) and declaration.get("name") == name:
                schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
                return schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "object"}


def _usage(call: Call, prompt: int, completion: int) -> dict[str, int]:
    sw = call.switches
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion + sw.reasoning_tokens,
    }
    if sw.cached_tokens:
        usage["cachedContentTokenCount"] = sw.cached_tokens
    if sw.reasoning_tokens:
        usage["thoughtsTokenCount"] = sw.reasoning_tokens
    return usage


def _response(parts: list[dict[str, Any]], model: str, response_id: str, finish: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {"candidates": [candidate], "modelVersion": model, "responseId": response_id}


def _reply(call: Call, body: dict[str, Any], contents: list[Any]) -> tuple[str | None, str]:
    """(forced function name or None, reply text)."""
    function = _forced_function(body)
    if function is not None:  # the arguments follow the declaration's schema
        echo = text.make_reply(call.switches.reply, _last_user_text(contents))
        args = schema_instance.instance(_declared_schema(body, function), echo)
        return function, orjson.dumps(args).decode()
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        config = {}
    json_mode = config.get("responseMimeType") == JSON_TYPE
    user_text = _last_user_text(contents)
    schema = (config.get("responseJsonSchema") or config.get("responseSchema")) if json_mode else None
    if schema and call.switches.reply is None:  # the answer follows the schema
        value = schema_instance.instance(schema, text.echo_reply(user_text))
        return None, orjson.dumps(value).decode()
    return None, text.make_reply(call.switches.reply, user_text, json_mode)


async def generate_content(call: Call) -> web.StreamResponse:
    body = call.body_object()
    model = call.request.match_info["model"]
    contents = _contents(body)
    prompt = _prompt_tokens(body, contents)
    function, reply = _reply(call, body, contents)
    if function is not None:
        parts: list[dict[str, Any]] = [{"functionCall": {"name": function, "args": orjson.loads(reply)}}]
        completion = text.count_tokens(function + reply)
    else:
        parts = [{"text": reply}]
        completion = text.count_tokens(reply)
    if call.stream:
        return await _stream(call, model, function, reply, prompt, completion)
    data = _response(parts, model, text.new_id("sim"), finish=True)
    if call.switches.usage:
        data["usageMetadata"] = _usage(call, prompt, completion)
    return call.json(data)


async def _stream(
    call: Call, model: str, function: str | None, reply: str, prompt: int, completion: int
) -> web.StreamResponse:
    response_id = text.new_id("sim")
    if function is not None:
        call_part = {"functionCall": {"name": function, "args": orjson.loads(reply)}}
        events = [_response([call_part], model, response_id, finish=True)]
    else:
        pieces = text.split_chunks(reply, call.switches.chunks)
        last = len(pieces) - 1
        events = [
            _response([{"text": piece}], model, response_id, finish=index == last) for index, piece in enumerate(pieces)
        ]
    if call.switches.usage:
        events[-1]["usageMetadata"] = _usage(call, prompt, completion)
    status = call.switches.status or 500

    def error_json() -> bytes:
        return call.dialect.error_body(status, text.fault_message(status))

    if call.request.query.get("alt") == "sse":
        content = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events]
        return await call.send_stream(
            SSE_TYPE,
            [],
            content,
            [],
            MALFORMED_SSE,
            lambda: b"data: " + error_json() + b"\n\n",
        )
    # without alt=sse Gemini streams one JSON array, element by element
    content = [(b"[" if index == 0 else b",\r\n") + orjson.dumps(event) for index, event in enumerate(events)]
    return await call.send_stream(
        JSON_TYPE,
        [],
        content,
        [b"]"],
        MALFORMED_ARRAY,
        lambda: b",\r\n" + error_json() + b"]",
    )


async def stream_generate_content(call: Call) -> web.StreamResponse:
    return await generate_content(call)


async def count_tokens(call: Call) -> web.Response:
    body = call.body_object()
    request = body.get("generateContentRequest")
    if isinstance(request, dict):
        body = request
    contents = _contents(body)
    return call.json({"totalTokens": _prompt_tokens(body, contents)})


def _embedding(request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
        raise RequestError("* EmbedContentRequest.content: content is not specified")
    dimensions = request.get("outputDimensionality") or DEFAULT_EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 8192:
        raise RequestError("outputDimensionality must be an integer between 1 and 8192")
    joined = " ".join(_part_texts(request["content"]))
    return {"values": text.embedding_vector(joined, dimensions)}


async def embed_content(call: Call) -> web.Response:
    return call.json({"embedding": _embedding(call.body_object())})


async def batch_embed_contents(call: Call) -> web.Response:
    requests = call.body_object().get("requests")
    if not isinstance(requests, list) or not requests:
        raise RequestError("* BatchEmbedContentsRequest.requests: requests is not specified")
    return call.json({"embeddings": [_embedding(request) for request in requests]})


# the v1beta and the stable v1 surface answer alike (the google-genai SDK defaults to v1)
ROUTES = [
    (method, prefix + "/models/{model}" + suffix, GEMINI, handler, streams)
    for prefix in ("/v1beta", "/v1")
    for method, suffix, handler, streams in (
        ("POST", ":generateContent", generate_content, False),
        ("POST", ":streamGenerateContent", stream_generate_content, True),
        ("POST", ":countTokens", count_tokens, False),
        ("POST", ":embedContent", embed_content, False),
        ("POST", ":batchEmbedContents", batch_embed_contents, False),
    )
]
