"""Opt-in OpenTelemetry traces (SPEC §14): one span per App API / relay request, a child
span per upstream attempt, GenAI semantic-convention attributes.

Off unless ``telemetry.otlp_endpoint`` is set (spans then go to that OTLP/HTTP endpoint
in batches); when off every function here is a cheap no-op and the SDK is never
imported. Attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name`` (the platform
type), ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``
/ ``output_tokens``, ``gen_ai.response.id``, plus ``aigate.platform`` (the platform id),
``aigate.attempt`` and ``aigate.outcome``. Prompts and replies
(``gen_ai.input.messages``, ``gen_ai.output.messages``) are put on spans only with
``telemetry.capture_content: true``: prompts hold end users' data.

The tracer is the process's (one configuration per process); tests install an
in-memory exporter with ``setup(cfg, exporter=...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

_tracer: Any = None
_provider: Any = None
_capture = False

# Paths whose requests get a span: the App API and the relay.
TRACED_PREFIXES = ("/bp/", "/v1/")
MAX_CAPTURED_BYTES = 64 * 1024


def enabled() -> bool:
    return _tracer is not None


def setup(cfg: Any, exporter: Any = None) -> None:
    """Start tracing with ``cfg`` (a ``TelemetryCfg``); ``exporter`` replaces OTLP (tests)."""
    global _tracer, _provider, _capture
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown()
    provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=cfg.otlp_endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _capture = provider, cfg.capture_content
    _tracer = provider.get_tracer("aigate")


def shutdown() -> None:
    """Flush and stop (spans still queued are sent)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


async def start(services: Any) -> None:
    """Background starter: tracing on when the configuration names an endpoint."""
    cfg = services.config.telemetry
    if cfg.otlp_endpoint:
        setup(cfg)

        async def stop() -> None:
            shutdown()

        services.stoppers.append(stop)


# --- upstream attempts (called by aigate.engine.routing)


def _operation(path: str) -> str:
    if "embedding" in path:
        return "embeddings"
    if "image" in path:
        return "generate_content"
    return "chat"


def start_attempt(platform: Any, model: str, number: int) -> Any:
    """``(span, request span)``: a child of the current request span; None when off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    parent = trace.get_current_span()
    span = _tracer.start_span(
        f"chat {model}",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": platform.type,
            "gen_ai.request.model": model,
            "aigate.platform": platform.id,
            "aigate.attempt": number + 1,
            "server.address": platform.base_url,
        },
    )
    return span, parent


def _usage_attributes(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    return {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}


def end_attempt(started: Any, outcome: str, exc: Any = None, result: Any = None) -> None:
    if started is None:
        return
    span, parent = started
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("aigate.outcome", outcome)
    if exc is not None:
        span.set_attribute("error.type", str(exc.status or exc.kind))
        span.set_status(Status(StatusCode.ERROR, exc.message[:200]))
    attrs: dict[str, Any] = {}
    if result is not None:
        attrs.update(_usage_attributes(getattr(result, "usage", None)))
        upstream_id = getattr(result, "upstream_id", "")
        if upstream_id:
            attrs["gen_ai.response.id"] = upstream_id
        content = getattr(result, "content", None)
        if _capture and isinstance(content, str):
            attrs["gen_ai.output.messages"] = orjson.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": content}]}]
            ).decode()
    span.set_attributes(attrs)
    if outcome == "success" and parent.is_recording():
        parent.set_attributes(
            {
                **{k: v for k, v in attrs.items() if k != "gen_ai.output.messages"},
                "gen_ai.request.model": span.attributes.get("gen_ai.request.model"),
                "gen_ai.provider.name": span.attributes.get("gen_ai.provider.name"),
                "aigate.platform": span.attributes.get("aigate.platform"),
            }
        )
    span.end()


def annotate_request(**attributes: Any) -> None:
    """Set attributes on the current request span (the call path: usage, strategy, cost)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


# --- the request span (``aigate.app.observe_requests`` runs App API and relay requests in it)


def traces(path: str) -> bool:
    """Whether a request to ``path`` runs inside a span of its own (``traced``)."""
    return _tracer is not None and path.startswith(TRACED_PREFIXES)


async def traced(app: Callable[..., Awaitable[None]], scope, receive, send, status: Callable[[], int]) -> None:
    """Run an App API or relay request inside its span; upstream attempts become its
    children. ``status()`` is the response's status once sent (the caller watches ``send``)."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    path = scope["path"]
    captured: list[bytes] = []

    async def receive_wrapper():
        message = await receive()
        if message.get("type") == "http.request" and sum(map(len, captured)) < MAX_CAPTURED_BYTES:
            captured.append(message.get("body", b""))
        return message

    name = f"{_operation(path)} {scope['method']} {path}"
    with _tracer.start_as_current_span(
        name,
        kind=trace.SpanKind.SERVER,
        attributes={
            "gen_ai.operation.name": _operation(path),
            "http.request.method": scope["method"],
            "url.path": path,
        },
    ) as span:
        try:
            await app(scope, receive_wrapper if _capture else receive, send)
        finally:
            code = status()
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            if _capture and captured:
                _capture_prompt(span, b"".join(captured))


def _capture_prompt(span: Any, body: bytes) -> None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if isinstance(doc, dict):
        messages = doc.get("messages", doc.get("input", doc.get("parameters")))
        if messages is not None:
            span.set_attribute("gen_ai.input.messages", orjson.dumps(messages).decode()[:MAX_CAPTURED_BYTES])
