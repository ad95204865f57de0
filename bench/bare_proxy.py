"""The bare reference proxy: the Python floor for a gateway on this stack.

Starlette + orjson + one shared aiohttp ClientSession; its table of open files is sized
at start-up as aigate's is (``aigate.fdtable``), so neither pays the kernel's pause when
the table doubles under load. ``POST /v1/chat/completions`` is forwarded to
``$BARE_UPSTREAM`` with the body untouched; the response (JSON or SSE) is sent back as it
arrives. Run: ``uvicorn bench.bare_proxy:app --loop uvloop --http httptools``.
"""

import contextlib
import os

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aigate import fdtable

fdtable.raise_limit_and_grow()  # before uvicorn starts: the same footing as aigate's serve
UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:8090") + "/v1/chat/completions"
session: aiohttp.ClientSession


async def chat(request):
    body = await request.body()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    upstream = await session.post(UPSTREAM, data=body, headers=headers)
    if orjson.loads(body).get("stream") is True:

        async def relay():
            async with upstream:
                async for chunk in upstream.content.iter_any():
                    yield chunk

        return StreamingResponse(relay(), upstream.status, media_type="text/event-stream")
    async with upstream:
        return Response(await upstream.read(), upstream.status, media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(app):
    global session
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    yield
    await session.close()


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)
