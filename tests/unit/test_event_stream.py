"""EventStream at the ASGI level: what it sends, and what a client leaving, a stream
ending and a cancellation from elsewhere each do to the streaming task.

The server side is uvicorn's behaviour under ASGI spec 2.3: ``receive`` waits until the
client disconnects (or the response is complete), then says ``http.disconnect``; ``send``
after a disconnect is silently dropped. The end-to-end checks (a real server, a client
that hangs up, the 499 row) are in tests/api/test_chat_stream.py and test_relay.py.
"""

from __future__ import annotations

import asyncio

import pytest

from aigate.api.event_stream import SERVER_SEND, EventStream

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


class Connection:
    """The server's side of one request, as uvicorn's cycle behaves."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.gone = asyncio.Event()  # the client hung up, or the response is complete

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.gone.set()  # uvicorn: a complete response makes receive() return a disconnect

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def finish(*tasks: asyncio.Task) -> None:
    """Wait for the tasks without cancelling them on a timeout (``wait_for`` would, and a
    response that swallows that cancellation would then look finished)."""
    _done, pending = await asyncio.wait(tasks, timeout=2)
    assert not pending, "still running"


async def frames(parts: list[bytes], *, then_wait: asyncio.Event | None = None, seen: list | None = None):
    try:
        for part in parts:
            yield part
        if then_wait is not None:
            await then_wait.wait()  # an upstream that has not sent its next event yet
    except asyncio.CancelledError:
        if seen is not None:
            seen.append("cancelled")
        raise


async def test_a_whole_stream_is_sent_with_the_event_stream_headers():
    conn = Connection()
    await EventStream(frames([b"data: 1\n\n", b"data: 2\n\n"]), {"x-request-id": "r1"})(SCOPE, conn.receive, conn.send)
    start = conn.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-request-id"] == b"r1"
    assert conn.body == b"data: 1\n\ndata: 2\n\n"
    assert conn.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_the_frames_go_to_the_servers_own_send_and_the_start_and_end_through_the_wrappers():
    conn, wrapped = Connection(), []

    async def wrapper(message: dict) -> None:  # a middleware's send: it sees what passes it
        wrapped.append(message["type"] if message.get("body") is None else message["body"])
        await conn.send(message)

    scope = {**SCOPE, SERVER_SEND: conn.send}
    await EventStream(frames([b"data: 1\n\n", b"data: 2\n\n"]))(scope, conn.receive, wrapper)
    assert conn.body == b"data: 1\n\ndata: 2\n\n"
    assert wrapped == ["http.response.start", b""]  # the start and the end of the body


async def test_a_client_that_leaves_stops_the_stream_where_it_waits():
    conn, never, seen = Connection(), asyncio.Event(), []
    response = EventStream(frames([b"data: 1\n\n"], then_wait=never, seen=seen))
    task = asyncio.create_task(response(SCOPE, conn.receive, conn.send))
    while conn.body != b"data: 1\n\n":
        await asyncio.sleep(0)
    conn.gone.set()  # the client hangs up while the upstream is silent
    await finish(task)
    task.result()  # the response returned normally
    assert seen == ["cancelled"]  # the generator was stopped where it waited
    assert not task.cancelled() and task.cancelling() == 0
    assert all(m.get("more_body", True) for m in conn.sent)  # no end of body was sent


async def test_the_disconnect_that_follows_a_complete_response_cancels_nothing():
    conn, seen = Connection(), []

    async def run() -> str:
        await EventStream(frames([b"data: 1\n\n"], seen=seen))(SCOPE, conn.receive, conn.send)
        await asyncio.sleep(0.01)  # the request's task goes on after the response
        return "went on"

    task = asyncio.create_task(run())
    await finish(task)
    assert task.result() == "went on"
    assert seen == [] and conn.body == b"data: 1\n\n"


async def test_a_cancellation_from_elsewhere_is_not_swallowed_and_stops_the_stream():
    conn, never, seen = Connection(), asyncio.Event(), []
    task = asyncio.create_task(EventStream(frames([b"x"], then_wait=never, seen=seen))(SCOPE, conn.receive, conn.send))
    while not conn.body:
        await asyncio.sleep(0)
    task.cancel()  # e.g. the server shutting down
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_an_error_in_the_frames_is_raised_in_the_requests_task():
    async def failing():
        yield b"data: 1\n\n"
        raise RuntimeError("a bug in the stream")

    conn = Connection()
    with pytest.raises(RuntimeError, match="a bug in the stream"):
        await EventStream(failing())(SCOPE, conn.receive, conn.send)
    assert conn.body == b"data: 1\n\n"


async def test_no_task_is_left_behind():
    before = asyncio.all_tasks()
    conn, other, never = Connection(), Connection(), asyncio.Event()
    left = asyncio.create_task(EventStream(frames([b"x"], then_wait=never))(SCOPE, conn.receive, conn.send))
    done = asyncio.create_task(EventStream(frames([b"y"]))(SCOPE, other.receive, other.send))
    while not conn.body:
        await asyncio.sleep(0)
    conn.gone.set()
    await finish(left, done)
    for _ in range(10):  # the watchers' cancellations take a step of the loop
        if asyncio.all_tasks() == before:
            break
        await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
