"""Incremental Server-Sent Events parsing.

``SSEDecoder`` turns arbitrary byte chunks into ``(event, data)`` pairs following the
WHATWG event-stream rules: ``\\n``, ``\\r\\n`` and ``\\r`` line endings, multi-line
``data:`` fields joined with ``\\n``, ``:`` comment lines ignored, one optional space
after the colon stripped, events dispatched on a blank line. ``data`` stays ``bytes`` so
JSON payloads go straight to ``orjson.loads`` without decoding.

At end of stream the last event is dispatched even without its closing blank line:
some servers omit it, and a frame cut in half still surfaces (as invalid JSON) instead
of vanishing silently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

DEFAULT_EVENT = "message"


class SSEDecoder:
    """Feed it chunks; it returns the events completed by each chunk."""

    __slots__ = ("_data", "_event", "_tail")

    def __init__(self) -> None:
        self._tail = b""  # an unfinished line carried over to the next chunk
        self._event = ""
        self._data: list[bytes] = []

    @property
    def idle(self) -> bool:
        """No line or event is half read."""
        return not (self._tail or self._data or self._event)

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if chunk.endswith(b"\n\n") and not (self._tail or self._data or self._event) and b"\r" not in chunk:
            return self._whole_events(chunk)
        buf = self._tail + chunk if self._tail else chunk
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                # the matching "\n" may arrive with the next chunk: decide then
                self._tail = b"\r"
                buf = buf[:-1]
            else:
                self._tail = b""
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            if self._tail:
                self._tail = lines[-1] + b"\r"
            else:
                self._tail = lines[-1]
        else:
            lines = buf.split(b"\n")
            self._tail = lines[-1]
        out: list[tuple[str, bytes]] = []
        for i in range(len(lines) - 1):
            self._line(lines[i], out)
        return out

    def _whole_events(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """A read of complete events (how upstreams write them): one-line ``data: ...``
        events are taken whole, without going line by line; others take the long way."""
        out: list[tuple[str, bytes]] = []
        for block in chunk[:-2].split(b"\n\n"):
            if block[:6] == b"data: " and b"\n" not in block:
                out.append((DEFAULT_EVENT, block[6:]))
                continue
            for line in block.split(b"\n"):
                self._line(line, out)
            self._line(b"", out)
        return out

    def close(self) -> list[tuple[str, bytes]]:
        """End of stream: flush an unterminated last line and a pending event."""
        out: list[tuple[str, bytes]] = []
        tail, self._tail = self._tail, b""
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        if tail:
            self._line(tail, out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[tuple[str, bytes]]) -> None:
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                out.append((self._event or DEFAULT_EVENT, data))
                self._data = []
            self._event = ""
            return
        if line[0] == 0x3A:  # ":" starts a comment (keep-alive)
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id" and "retry" are not used by any upstream we talk to


class SSEReader:
    """Async iterator of ``(event, data)`` over an aiohttp response body.

    A class rather than an async generator so that abandoning it mid-stream leaves no
    suspended generator behind; closing the response is the owner's job.
    """

    __slots__ = ("_content", "_decoder", "_eof", "_pending")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._decoder = SSEDecoder()
        # a list, not a deque: an empty deque keeps a 64-slot block (~600 bytes) for as
        # long as the stream is open, and a read rarely holds more than a few events
        self._pending: list[tuple[str, bytes]] = []
        self._eof = False

    def __aiter__(self) -> SSEReader:
        return self

    @property
    def pending(self) -> bool:
        """An event is already decoded: the next ``__anext__`` returns without reading."""
        return bool(self._pending)

    def next_ready(self) -> tuple[str, bytes]:
        """The next event when ``pending`` (no coroutine needed)."""
        return self._pending.pop(0)

    async def __anext__(self) -> tuple[str, bytes]:
        pending = self._pending
        while not pending:
            if self._eof:
                raise StopAsyncIteration
            self.take(await self._content.readany())
        return pending.pop(0)

    def take(self, chunk: bytes) -> None:
        """Decode one read (an empty one is the end of the body)."""
        if chunk:
            self._pending.extend(self._decoder.feed(chunk))
        else:
            self._eof = True
            self._pending.extend(self._decoder.close())


def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, bytes]]:
    """The events of an ``text/event-stream`` body, as they arrive."""
    return SSEReader(content)
