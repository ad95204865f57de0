"""The one interface every upstream wire format implements.

Nothing outside ``aigate.providers`` knows a provider's format: the engine hands an
adapter an OpenAI-shaped request and gets back text, usage and the raw upstream bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:
    from .openai_wire import ReplyText


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_byte_s: float = 60.0
    total_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Platform:
    """One upstream account, as the engine sees it at run time."""

    id: str  # the YAML name, unique
    number: int  # stable integer: the usage log's ``channel``
    type: str  # openai | azure_openai | anthropic | gemini | openai_compatible | http_job
    base_url: str
    api_key: str = ""  # the key of this attempt (routing picks one of ``api_keys``)
    models: tuple[str, ...] = ()
    priority: int = 0
    weight: int = 1
    timeouts: Timeouts = Timeouts()
    model_mapping: dict[str, str] = field(default_factory=dict)
    # type-specific settings: azure ``api_version``; http_job submit/poll description; extra headers
    options: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    api_keys: tuple[str, ...] = ()  # every configured key; calls rotate over the healthy ones

    def upstream_model(self, model: str) -> str:
        return self.model_mapping.get(model, model)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    image_input_tokens: int = 0
    web_search_count: int = 0
    estimated: bool = False  # True when the upstream reported none and we counted ourselves

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ChatRequest:
    model: str  # the upstream model name (mapping already applied)
    messages: list[dict[str, Any]]  # OpenAI format, system message(s) included
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, top_p, stop, ...
    response_format: dict[str, Any] | None = None  # e.g. {"type": "json_object"}
    # OpenAI fields passed through untouched by the relay (tools, tool_choice, seed, ...)
    extra: dict[str, Any] = field(default_factory=dict)
    # the consumer reads ``StreamEvent.openai_chunk``; False spares the adapters of other
    # wire formats building a chunk per event that nobody reads (the App API stream)
    openai_chunks: bool = True
    # the consumer sends the upstream's SSE bytes on as they came (the relay): an OpenAI
    # wire adapter hands over reads of ordinary content chunks whole (``StreamEvent.sse``)
    sse_passthrough: bool = False


@dataclass(slots=True)
class ChatResult:
    content: str
    usage: Usage
    raw: bytes  # the upstream response body exactly as received
    upstream_id: str = ""
    finish_reason: str = "stop"
    # the answer in OpenAI chat.completion shape (the relay returns it); for OpenAI-format
    # upstreams this is the parsed upstream body itself
    openai: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StreamEvent:
    """One upstream stream event, already translated."""

    delta: str = ""  # assistant text added by this event
    usage: Usage | None = None  # set on the event that carries usage (usually the last)
    finish_reason: str | None = None
    upstream_id: str = ""
    # the event as an OpenAI ``chat.completion.chunk`` JSON document (bytes, no ``data:``
    # prefix); for OpenAI-format upstreams the upstream bytes untouched. None when the
    # event has no OpenAI equivalent, or the request asked for none (``openai_chunks``).
    openai_chunk: bytes | None = None
    # another event of the same upstream read follows without waiting: the stream pump
    # sends the frames of one read together (one write to the client instead of several)
    more: bool = False
    # with ``ChatRequest.sse_passthrough``: one upstream read of ordinary OpenAI content
    # chunks, SSE framing included, neither decoded nor parsed (``delta`` stays empty;
    # ``reply`` keeps its text for whoever needs it at the end)
    sse: bytes | None = None
    # the reply so far as the adapter keeps it (text, reads passed whole, tool-call
    # arguments apart), on every event of a stream whose adapter keeps one (the OpenAI
    # wire's): the consumer reads it instead of keeping a second copy
    reply: ReplyText | None = None


@dataclass(slots=True)
class JsonResult:
    """A non-chat JSON call (images, embeddings, job submit/poll)."""

    data: Any  # the parsed body
    raw: bytes
    usage: Usage = field(default_factory=Usage)
    upstream_id: str = ""


@dataclass(slots=True)
class BinaryResult:
    """A call that answers with bytes (text to speech)."""

    content: bytes
    content_type: str
    usage: Usage = field(default_factory=Usage)


class UpstreamError(Exception):
    """The upstream answered with an error or could not be reached.

    ``retryable`` is True for 429, 5xx, timeouts and connection failures: the router
    moves to the next platform. Other 4xx are the caller's fault and are not retried.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        body: bytes = b"",
        kind: str = "http",  # http | timeout | connect | protocol
        retry_after: float | None = None,  # seconds the upstream asked us to wait (Retry-After)
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.body = body
        self.kind = kind
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str, *, body: bytes = b"") -> None:
        super().__init__(message, status=None, retryable=True, body=body, kind="timeout")


class ChatProvider(Protocol):
    async def chat(self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest) -> ChatResult: ...

    def chat_stream(
        self, session: aiohttp.ClientSession, platform: Platform, req: ChatRequest
    ) -> AsyncIterator[StreamEvent]: ...
