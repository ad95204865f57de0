"""A running gateway wired to a running simulator, on each database backend."""

from __future__ import annotations

import pytest

from tests.gateway import base_config, start_gateway


@pytest.fixture
async def gw(db_url, simulator):
    gateway = await start_gateway(base_config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()
