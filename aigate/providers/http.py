"""HTTP plumbing shared by the adapters.

Every upstream call goes through ``open_response`` (or ``request_json``) so that
timeouts, connection failures and error statuses map to the same ``UpstreamError``s
whatever the wire format:

* connect: ``aiohttp.ClientTimeout(sock_connect=connect_s, total=total_s)``;
* first byte: the response headers (and, for streams, the first event; see
  ``StreamFrames``) must arrive within ``first_byte_s`` -> ``UpstreamTimeout``;
* total: aiohttp's own ``total`` covers the body reads too -> ``UpstreamTimeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import aiohttp
import orjson

from .base import Platform, Timeouts, UpstreamError, UpstreamTimeout, Usage
from .sse import SSEReader
from .tokens import count_messages, count_text

JSON_HEADERS = {"Content-Type": "application/json"}

# Exceptions that mean "the connection broke" (refused, reset, closed early).
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, ConnectionError, OSError)


@lru_cache(maxsize=64)
def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=timeouts.total_s, sock_connect=timeouts.connect_s)


def first_byte_deadline(platform: Platform) -> float:
    return asyncio.get_running_loop().time() + platform.timeouts.first_byte_s


# --- errors ------------------------------------------------------------------------


def redact(text: str, platform: Platform) -> str:
    """Upstreams sometimes echo the credential back; it must never leave this package."""
    key = platform.api_key
    if key and key in text:
        text = text.replace(key, "***")
    return text


def error_message(raw: bytes) -> str:
    """The provider's own message from an error body, or "" when there is none.

    Covers OpenAI/Azure/Gemini ``{"error": {"message": ...}}`` (Gemini may wrap it in a
    list), Anthropic ``{"type": "error", "error": {...}}`` and plain ``{"message"}`` /
    ``{"detail"}`` / ``{"error": "..."}`` shapes from compatible servers.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str):
            return msg
    if isinstance(err, str):
        return err
    for key in ("message", "detail"):
        msg = doc.get(key)
        if isinstance(msg, str):
            return msg
    return ""


MAX_RETRY_AFTER_S = 3600.0


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP
    date); None when absent or unreadable. Capped at an hour: a broken upstream must
    not take itself out for days."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return min(max(float(value) / 1000, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def status_error(
    status: int, raw: bytes, platform: Platform, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """An HTTP error status: 429 and 5xx (Anthropic's 529 included) are retryable."""
    message = redact(error_message(raw), platform) or f"upstream returned HTTP {status}"
    retryable = status == 429 or status >= 500
    return UpstreamError(
        message, status=status, retryable=retryable, body=raw, kind="http", retry_after=retry_after_s(headers)
    )


def protocol_error(message: str, raw: bytes = b"") -> UpstreamError:
    return UpstreamError(message, retryable=True, body=raw, kind="protocol")


def timeout_error(platform: Platform, what: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"upstream {platform.id} timed out {what}")


def connect_error(platform: Platform, exc: BaseException) -> UpstreamError:
    return UpstreamError(
        redact(f"cannot reach upstream {platform.id}: {type(exc).__name__}: {exc}", platform),
        retryable=True,
        kind="connect",
    )


def body_error(platform: Platform, exc: BaseException) -> UpstreamError:
    """A failure while reading an already started body: the answer is cut short."""
    if isinstance(exc, TimeoutError):
        return timeout_error(platform, "reading the response")
    return protocol_error(redact(f"upstream {platform.id} response cut short: {type(exc).__name__}", platform))


# --- requests ----------------------------------------------------------------------


async def open_response(
    session: aiohttp.ClientSession,
    platform: Platform,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    deadline: float | None = None,
) -> aiohttp.ClientResponse:
    """Send the request and wait for a successful status line and headers.

    Headers must arrive before ``deadline`` (loop time; default now + first_byte_s).
    Error statuses are read and raised as ``UpstreamError``; on success the caller owns
    the response and must release it.
    """
    if deadline is None:
        deadline = first_byte_deadline(platform)
    try:
        async with asyncio.timeout_at(deadline):
            resp = await session.request(
                method, url, data=body, headers=headers, timeout=client_timeout(platform.timeouts)
            )
    except TimeoutError:
        raise timeout_error(platform, "waiting for the response") from None
    except _CONNECTION_ERRORS as exc:
        raise connect_error(platform, exc) from None
    except aiohttp.ClientError as exc:
        raise protocol_error(redact(f"bad response from {platform.id}: {exc}", platform)) from None
    if resp.status >= 400:
        try:
            raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError):
            raw = b""
        finally:
            resp.release()
        raise status_error(resp.status, raw, platform, resp.headers)
    return resp


async def read_body(resp: aiohttp.ClientResponse, platform: Platform) -> bytes:
    try:
        return await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise body_error(platform, exc) from None
    finally:
        resp.release()


def stream_document(data: bytes) -> dict[str, Any]:
    """One stream event's JSON object; anything else is a protocol error."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise protocol_error("malformed stream frame", data) from None
    if not isinstance(doc, dict):
        raise protocol_error("malformed stream frame", data)
    return doc


def parse_json(raw: bytes, platform: Platform) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise protocol_error(f"upstream {platform.id} sent a body that is not JSON", raw) from None


async def request_json(
    session: aiohttp.ClientSession,
    platform: Platform,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any = None,
) -> tuple[Any, bytes]:
    """One JSON request/response round trip: ``(parsed body, raw body)``."""
    payload = None if body is None else orjson.dumps(body)
    resp = await open_response(session, platform, method, url, headers=headers, body=payload)
    raw = await read_body(resp, platform)
    return parse_json(raw, platform), raw


async def request_bytes(
    session: aiohttp.ClientSession,
    platform: Platform,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any,
) -> tuple[bytes, str]:
    """POST JSON, answer with raw bytes: ``(body, content type)``."""
    resp = await open_response(session, platform, "POST", url, headers=headers, body=orjson.dumps(body))
    content_type = resp.headers.get("Content-Type", "application/octet-stream")
    return await read_body(resp, platform), content_type


class StreamFrames(SSEReader):
    """The SSE frames of a streamed answer, with upstream failures mapped.

    The first frame must arrive before the same deadline as the headers; after that only
    the total timeout applies. Read failures become ``UpstreamTimeout`` /
    ``UpstreamError(kind="protocol")`` raised from ``__anext__``, i.e. at the point in
    the stream where they happen. ``release()`` must be called when done. (A subclass of
    the reader rather than a wrapper: one coroutine less to resume per streamed event.)
    """

    __slots__ = ("_deadline", "_platform", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse, platform: Platform, deadline: float) -> None:
        super().__init__(resp.content)
        self._resp = resp
        self._platform = platform
        self._deadline: float | None = deadline

    @property
    def between_reads(self) -> bool:
        """Every event read so far is handed out and none is half read: the next read can
        be taken whole (``read``)."""
        return self._deadline is None and not self._pending and not self._eof and self._decoder.idle

    async def read(self) -> bytes:
        """The next read of the body as it came (``b""`` at its end), when
        ``between_reads``; a read not taken whole goes back through ``take``."""
        try:
            return await self._content.readany()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise body_error(self._platform, exc) from None

    async def __anext__(self) -> tuple[str, bytes]:
        pending = self._pending
        if pending:  # decoded with an earlier read
            return pending.pop(0)
        try:
            if self._deadline is None:
                while not pending:
                    if self._eof:
                        raise StopAsyncIteration
                    self.take(await self._content.readany())
                return pending.pop(0)
            try:
                async with asyncio.timeout_at(self._deadline):
                    frame = await SSEReader.__anext__(self)
            except TimeoutError:
                raise timeout_error(self._platform, "waiting for the first event") from None
            self._deadline = None
            return frame
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise body_error(self._platform, exc) from None

    def release(self) -> None:
        self._resp.release()


async def open_stream(
    session: aiohttp.ClientSession,
    platform: Platform,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any,
) -> StreamFrames:
    deadline = first_byte_deadline(platform)
    resp = await open_response(
        session, platform, "POST", url, headers=headers, body=orjson.dumps(body), deadline=deadline
    )
    return StreamFrames(resp, platform, deadline)


def merged_headers(base: dict[str, str], platform: Platform) -> dict[str, str]:
    """``base`` plus the platform's configured extra headers (``options.headers``)."""
    extra = platform.options.get("headers")
    if extra:
        base.update(extra)
    return base


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


# --- usage estimation ----------------------------------------------------------------


def estimate_tokens(chars: int) -> int:
    """About four characters per token: ceil(chars / 4). Only for inputs with no text to
    count (e.g. a bare character total); text goes through ``aigate.providers.tokens``."""
    return (chars + 3) // 4


def message_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of text in OpenAI-shaped messages (images are not counted)."""
    n = 0
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str):
            n += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    text = part.get("text")
                    if isinstance(text, str):
                        n += len(text)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            n += len(fn.get("name") or "") + len(fn.get("arguments") or "")
    return n


def estimate_usage(messages: list[dict[str, Any]], reply: str | int, model: str = "") -> Usage:
    """Usage counted here because the upstream reported none: tiktoken counts of the prompt
    and of the reply text (``model`` picks the encoding). A bare character count for the
    reply (callers that kept no text) falls back to ceil(chars / 4)."""
    output = count_text(reply, model) if isinstance(reply, str) else estimate_tokens(reply)
    return Usage(input_tokens=count_messages(messages, model), output_tokens=output, estimated=True)
