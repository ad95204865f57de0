"""The OpenAI wire format as data: usage, chunks and completion documents.

Shared by the OpenAI adapter (which reads them) and the adapters of other formats and
the relay (which build them); no I/O here.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import orjson

from .base import ChatRequest, ChatResult, Usage
from .http import estimate_usage
from .sse import SSEDecoder

# --- usage ---------------------------------------------------------------------------


def parse_usage(u: dict[str, Any]) -> Usage:
    """OpenAI ``usage`` -> Usage (chat, embeddings and gpt-image shapes)."""
    prompt = u.get("prompt_tokens")
    if prompt is None:  # images API: input_tokens / output_tokens
        prompt = u.get("input_tokens") or 0
        output = u.get("output_tokens") or 0
    else:
        output = u.get("completion_tokens") or 0
    usage = Usage(input_tokens=prompt or 0, output_tokens=output)
    details = u.get("prompt_tokens_details") or u.get("input_tokens_details")
    if details:
        usage.cached_tokens = details.get("cached_tokens") or 0
        usage.image_input_tokens = details.get("image_tokens") or 0
    details = u.get("completion_tokens_details")
    if details:
        usage.reasoning_tokens = details.get("reasoning_tokens") or 0
    return usage


# --- stream chunks -----------------------------------------------------------------------


_PLAIN_DELTA = b'"delta":{"content":"'


def plain_delta(data: bytes) -> str | None:
    """The text of an ordinary content chunk (``"delta":{"content":"..."}``, no finish, no
    usage, no escapes), read without parsing the JSON: most events of a stream are such
    chunks. None for anything else (role, tool calls, finish, usage, errors, escaped
    text, another layout): the caller parses those."""
    start = data.find(_PLAIN_DELTA)
    if start < 0 or data[:1] != b"{" or data[-1:] != b"}":
        return None
    # find() rather than ``in``: ``in`` on bytes first tries its operand as an int
    if data.find(b'"finish_reason":null') < 0 or data.find(b'"usage":{') >= 0 or data.find(b'"error"') >= 0:
        return None
    start += len(_PLAIN_DELTA)
    end = data.find(b'"', start)
    if end < 0 or data[end + 1 : end + 2] != b"}" or data.find(b"\\", start, end) >= 0:
        return None
    try:
        return data[start:end].decode()
    except UnicodeDecodeError:
        return None


def passes_whole(read: bytes) -> bool:
    """An upstream read made only of ordinary chunks: one-line ``data: {...}`` events
    whose every ``finish_reason`` and ``usage`` is null, with no error and no end marker.
    The relay sends such a read on as it came, neither decoded nor parsed; anything else
    (the first chunk, the finish, usage, errors, comments, other layouts, an event cut
    across two reads) is decoded event by event."""
    return (
        read[:7] == b"data: {"
        and read[-3:] == b"}\n\n"
        # one-line events, nothing else (the usual read, one event, takes one memchr)
        and (read.find(b"\n") == len(read) - 2 or read.count(b"\n") == 2 * read.count(b"data: "))
        and read.count(b'"finish_reason"') == read.count(b'"finish_reason":null')
        and read.count(b'"usage"') == read.count(b'"usage":null')
        and read.find(b'"error"') < 0
        and read.find(b"[DONE]") < 0
        and read.find(b"\r") < 0
    )


def reply_text(message: dict[str, Any]) -> str:
    """The text a message, or a chunk's delta, adds to the reply: its content and any
    tool-call arguments (what the usage estimate counts)."""
    content = message.get("content")
    parts = [content] if isinstance(content, str) else []
    for call in message.get("tool_calls") or ():
        parts.append((call.get("function") or {}).get("arguments") or "")
    return "".join(parts)


def sse_text(data: bytes) -> str:
    """The reply text of OpenAI chunk events as SSE bytes (``StreamEvent.sse``)."""
    decoder = SSEDecoder()
    parts: list[str] = []
    for _event, payload in decoder.feed(data) + decoder.close():
        plain = plain_delta(payload)
        if plain is not None:
            parts.append(plain)
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if choices and isinstance(choices[0], dict):
            parts.append(reply_text(choices[0].get("delta") or {}))
    return "".join(parts)


# The text of an ordinary chunk between the bytes its stream's first such chunk had
# around it: no quote, escape or line break, so nothing in it can end the string.
_BARE_TEXT = re.compile(rb'[^"\\\r\n]*')


class ChunkLayout:
    """The bytes around the text of a stream's ordinary content chunks.

    Upstreams write every content chunk of a stream alike: the same id, model and
    fields, one event per read, only the text changes. Taken from a read whose event is a
    ``plain_delta`` chunk, the layout checks a later read with two comparisons and one
    pass over its few characters of text (``text``), where checking the read on its own
    (``passes_whole``, ``plain_delta``, the SSE decoder) scans it several times. A read
    with the same bytes around a text with no quote, backslash or line break is one such
    chunk: all that differs is inside the JSON string."""

    __slots__ = ("_head", "_head_len", "_tail", "_tail_len")

    def __init__(self, head: bytes, tail: bytes) -> None:
        self._head = head  # ``data: {...,"delta":{"content":"``
        self._tail = tail  # ``"},...,"finish_reason":null}]}\n\n``
        self._head_len, self._tail_len = len(head), len(tail)

    @classmethod
    def of_event(cls, data: bytes) -> ChunkLayout | None:
        """The layout of reads of ``data: <data>\n\n``, when ``data`` is a one-line plain
        text chunk."""
        if data.find(b"\n") >= 0 or data.find(b"\r") >= 0 or plain_delta(data) is None:
            return None
        start = data.find(_PLAIN_DELTA) + len(_PLAIN_DELTA)
        end = data.find(b'"', start)
        return cls(b"data: " + data[:start], data[end:] + b"\n\n")

    @classmethod
    def of_read(cls, read: bytes) -> ChunkLayout | None:
        """The layout of a read of one event (``passes_whole``)."""
        if read.find(b"\n") != len(read) - 2:
            return None
        return cls.of_event(read[6:-2])

    def text(self, read: bytes) -> str | None:
        """The text of ``read`` when it is one chunk of this layout, else None."""
        head, tail = self._head_len, len(read) - self._tail_len
        if (
            tail < head
            or read[:head] != self._head
            or read[tail:] != self._tail
            or _BARE_TEXT.fullmatch(read, head, tail) is None
        ):
            return None
        try:
            return read[head:tail].decode()
        except UnicodeDecodeError:
            return None


# A plain content chunk's text: without escapes (the quick pattern), or with them.
_PLAIN_CONTENT = re.compile(rb'"delta":\{"content":"([^"\\]*)"\}')
_ESCAPED_CONTENT = re.compile(rb'"delta":\{"content":"((?:[^"\\]|\\.)*)"\}')


def reads_text(reads: bytes) -> str:
    """The reply text of reads passed on whole (``passes_whole``): a regular-expression
    pass when every event in them is a plain content chunk (the common case), else
    ``sse_text``."""
    events = reads.count(b"data: ")
    found = _PLAIN_CONTENT.findall(reads)
    try:
        if len(found) == events:
            return b"".join(found).decode()
        found = _ESCAPED_CONTENT.findall(reads)
        if len(found) == events:
            return "".join(orjson.loads(b'"' + f + b'"') if b"\\" in f else f.decode() for f in found)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        pass
    return sse_text(reads)


class ReplyText:
    """A stream's reply text as it arrives: text, and upstream reads passed on whole
    (``StreamEvent.sse``). Every ``COMPACT`` parts it keeps one string instead: the text
    of the reads (~250 bytes a chunk against the few characters of text in it), joined
    with the text before, so a long stream does not keep a few hundred bytes per event for
    an estimate or a history it reads once at the end. (8: a delta of a few characters
    is a ~60-byte string object; an open stream keeps at most 8 of them.) Tool-call
    arguments are kept apart: the usage estimate counts them (``generated``), a chat's
    history does not (``text``)."""

    COMPACT = 8
    __slots__ = ("_parts", "_reads", "_tool_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._reads: list[bytes] = []
        self._tool_parts: list[str] = []

    def add_text(self, text: str) -> None:
        if self._reads:  # keep the order
            self._take_reads()
        parts = self._parts  # _add_part, inline: this runs for every event of a stream
        parts.append(text)
        if len(parts) >= self.COMPACT:
            parts[:] = ["".join(parts)]

    def add_read(self, read: bytes) -> None:
        self._reads.append(read)
        if len(self._reads) >= self.COMPACT:
            self._take_reads()

    def add_tool_text(self, text: str) -> None:
        _add_part(self._tool_parts, text)

    def _take_reads(self) -> None:
        _add_part(self._parts, reads_text(b"".join(self._reads)))
        self._reads.clear()

    def __bool__(self) -> bool:
        return bool(self._parts or self._reads or self._tool_parts)

    def text(self) -> str:
        """The reply's text (with whatever the reads passed whole carry)."""
        if self._reads:
            self._take_reads()
        return "".join(self._parts)

    def generated(self) -> str:
        """Everything generated: the text and any tool-call arguments."""
        return self.text() + "".join(self._tool_parts)


def _add_part(parts: list[str], text: str) -> None:
    """Append ``text``; every ``ReplyText.COMPACT`` parts, keep one joined string instead."""
    parts.append(text)
    if len(parts) >= ReplyText.COMPACT:
        parts[:] = ["".join(parts)]


# --- OpenAI message helpers for the other wire formats -----------------------------------


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> (mime, data)."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep:
        return None
    return header.split(";", 1)[0] or "image/png", data


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(p.get("text") or "" for p in content if p.get("type") == "text")


# --- OpenAI documents for the other wire formats ------------------------------------------


def usage_document(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_document(
    id: str,
    model: str,
    created: int,
    content: str | None,
    finish_reason: str,
    usage: Usage,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` with one choice."""
    # ``refusal`` is required by OpenAI's published schema; other providers never report one
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage_document(usage),
    }


def translated_result(
    req: ChatRequest,
    raw: bytes,
    *,
    upstream_id: str,
    model: str,
    content: str,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: Usage | None,
) -> ChatResult:
    """A non-OpenAI upstream's answer as a ChatResult carrying its OpenAI document;
    usage is estimated when the upstream reported none."""
    if usage is None:
        reply = len(content) + sum(len(c["function"]["arguments"]) for c in tool_calls)
        usage = estimate_usage(req.messages, reply)
    document = completion_document(
        upstream_id or "chatcmpl-" + secrets.token_hex(12),
        model,
        int(time.time()),
        content if content or not tool_calls else None,
        finish,
        usage,
        tool_calls,
    )
    return ChatResult(
        content=content, usage=usage, raw=raw, upstream_id=upstream_id, finish_reason=finish, openai=document
    )


def chunk_bytes(id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """A serialised ``chat.completion.chunk`` with one choice."""
    return orjson.dumps(
        {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
    )


def usage_chunk_bytes(id: str, model: str, created: int, usage: Usage) -> bytes:
    """The final usage-only chunk (``choices: []``), as OpenAI sends with include_usage."""
    return orjson.dumps(
        {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage_document(usage),
        }
    )
