"""The response of every streamed answer: server-sent events, sent from a task of their
own, with the client's leaving watched by one plain task.

Starlette's ``StreamingResponse``, under an ASGI server older than spec 2.4 (uvicorn
speaks 2.3), runs each response in an anyio task group: one task streams, another waits
for ``http.disconnect`` and cancels the group. For a response that stays open for
minutes that is a task group, a cancel scope and their wrapper coroutines held by every
open stream, and their set-up and tear-down on every one. Here one task sends the frames
and one waits: if the client leaves before the stream ends, it cancels the streaming
task, as the task group did, so the stream's generator stops where it waits for the
upstream (the stream pump then bills what was generated, as 499). The stream ends as the
task group's did: the response returns normally.

The frames are not sent from the request's own task: every event wakes the task that
sends it, and waking the request's task resumes each coroutine of the middleware it
runs in (a dozen, from uvicorn's cycle down to the endpoint) on every event. The request's
task only waits for the streaming task to end. For the same reason the frames between
the start and the end go to the server's own ``send``, which the outermost wrapper
(``aigate.app.observe_requests``) leaves in the scope under ``SERVER_SEND``: the wrappers
Starlette and aigate put around ``send`` look only at the response's start (its status,
whether it began), and each is a coroutine more per frame. The start and the end go
through them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SERVER_SEND = "aigate.server_send"  # the scope's key for the server's own ``send``


class EventStream(StreamingResponse):
    def __init__(self, frames: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(frames, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
        self._streaming: asyncio.Task | None = None  # the task sending the frames, until they are all sent
        self._client_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = scope.get("asgi", {}).get("spec_version", "2.0")
        if tuple(map(int, spec.split("."))) >= (2, 4):  # the server raises on a send after a disconnect
            await super().__call__(scope, receive, send)
            return
        frames_to = scope.get(SERVER_SEND, send)
        task = self._streaming = asyncio.get_running_loop().create_task(self._send_all(send, frames_to))
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            await task  # a cancellation of the request's task cancels the streaming task too
        except asyncio.CancelledError:
            # the streaming task's cancellation, ours (the client left), ends the response;
            # the request's own is passed on
            if not self._client_left or asyncio.current_task().cancelling() > 0:  # type: ignore[union-attr]
                raise
        finally:
            watcher.cancel()

    async def _send_all(self, send: Send, frames_to: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await frames_to({"type": "http.response.body", "body": chunk, "more_body": True})
        self._streaming = None  # all sent: a disconnect from here on cancels nothing
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        streaming, self._streaming = self._streaming, None
        if streaming is not None:
            self._client_left = True
            streaming.cancel()
