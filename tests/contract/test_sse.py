"""The incremental SSE parser: pure decoding, and reading a real aiohttp response."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from aigate.providers.sse import SSEDecoder, iter_sse


def decode(*chunks: bytes) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    out: list[tuple[str, bytes]] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out


def test_simple_events() -> None:
    assert decode(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [
        ("message", b'{"a":1}'),
        ("message", b"[DONE]"),
    ]


def test_named_events_and_crlf() -> None:
    stream = b"event: message_start\r\ndata: {}\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n"
    assert decode(stream) == [("message_start", b"{}"), ("ping", b"{}")]


def test_bare_cr_line_endings() -> None:
    assert decode(b"event: x\rdata: 1\r\rdata: 2\r\r") == [("x", b"1"), ("message", b"2")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert decode(b"data: a\ndata: b\ndata:c\n\n") == [("message", b"a\nb\nc")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": keep-alive\n\nid: 7\nretry: 10\ndata: x\n: note\n\n"
    assert decode(stream) == [("message", b"x")]


def test_only_one_leading_space_is_stripped() -> None:
    assert decode(b"data:  two\n\n") == [("message", b" two")]


def test_event_name_resets_after_dispatch() -> None:
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n") == [("a", b"1"), ("message", b"2")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert decode(b"\n\nevent: lonely\n\n\ndata: x\n\n") == [("message", b"x")]


def test_partial_chunks_at_every_byte() -> None:
    stream = b'event: e\r\ndata: {"k": "v"}\r\n\r\ndata: [DONE]\r\n\r\n'
    expected = [("e", b'{"k": "v"}'), ("message", b"[DONE]")]
    for i in range(len(stream) + 1):
        assert decode(stream[:i], stream[i:]) == expected, i
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == expected


def test_last_event_without_blank_line_is_flushed_at_end() -> None:
    assert decode(b"data: tail") == [("message", b"tail")]
    assert decode(b"data: tail\r") == [("message", b"tail")]


def test_feed_returns_only_completed_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b") == [("message", b"a")]
    assert decoder.close() == [("message", b"b")]


_line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["", "delta", "ping"]),
            st.lists(_line_text, min_size=1, max_size=3),
        ),
        max_size=6,
    ),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_any_split_of_any_stream_decodes_the_same(events, newline, cuts) -> None:
    stream = b""
    expected = []
    for name, lines in events:
        if name:
            stream += b"event: " + name.encode() + newline
        for line in lines:
            stream += b"data: " + line.encode() + newline
        stream += newline
        expected.append((name or "message", "\n".join(lines).encode()))
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert decode(*pieces) == expected


# --- over a real HTTP response ---------------------------------------------------------


@pytest.fixture
async def sse_server():
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in (
            b"data: one\r",
            b"\n\r\n: ping\n\nev",
            b"ent: two\ndata: 2a\n",
            b"data: 2b\n\n",
        ):
            await resp.write(piece)
            await asyncio.sleep(0.005)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/stream", handler)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def test_reads_events_from_an_aiohttp_response(sse_server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(sse_server.make_url("/stream")) as resp,
    ):
        events = [event async for event in iter_sse(resp.content)]
    assert events == [("message", b"one"), ("two", b"2a\n2b"), ("message", b"[DONE]")]


async def test_reader_stops_cleanly_when_abandoned(sse_server) -> None:
    url = sse_server.make_url("/stream")
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        reader = iter_sse(resp.content)
        assert await anext(reader) == ("message", b"one")
    # leaving the response mid-stream needs no cleanup of the reader


@settings(max_examples=100, deadline=None)
@given(
    blocks=st.lists(
        st.one_of(
            _line_text.map(lambda t: b"data: " + t.encode()),  # the common one-line event
            _line_text.map(lambda t: b"data:" + t.encode()),
            st.lists(_line_text, min_size=2, max_size=3).map(lambda ls: b"\n".join(b"data: " + x.encode() for x in ls)),
            _line_text.map(lambda t: b"event: delta\ndata: " + t.encode()),
            _line_text.map(lambda t: b": " + t.encode()),
            st.just(b""),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_reads_of_whole_events_decode_as_byte_by_byte(blocks) -> None:
    """A read made of complete events takes a shortcut; it must agree with the long way."""
    read = b"".join(block + b"\n\n" for block in blocks)
    assert decode(read) == decode(*(read[i : i + 1] for i in range(len(read))))
