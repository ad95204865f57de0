"""Fixtures for driving the provider simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from aigate.simulator.server import SimulatorHandle, start_simulator


@dataclass
class Frame:
    """One server-sent event."""

    event: str | None
    data: str

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def frames(self) -> list[Frame]:
        """Parse a complete ``text/event-stream`` body."""
        frames = []
        for block in self.body.decode().replace("\r\n", "\n").split("\n\n"):
            if not block.strip():
                continue
            event, data = None, []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
            frames.append(Frame(event, "\n".join(data)))
        return frames


class SimClient:
    """A thin aiohttp client for one simulator."""

    def __init__(self, handle: SimulatorHandle, session: aiohttp.ClientSession) -> None:
        self.handle = handle
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        async with self.session.request(
            method, self.handle.url + path, json=json, headers=headers, params=params, data=data
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        return await self.request("POST", path, json=json, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorHandle]:
    handle = await start_simulator()
    try:
        yield handle
    finally:
        await handle.close()


@pytest.fixture
async def sim(simulator: SimulatorHandle) -> AsyncIterator[SimClient]:
    async with aiohttp.ClientSession() as session:
        yield SimClient(simulator, session)
