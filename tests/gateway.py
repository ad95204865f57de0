"""Running a real aigate instance inside a test: uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import uvicorn

from aigate.app import create_app
from aigate.auth.tokens import mint_user_token
from aigate.config.loader import parse_config
from aigate.config.schema import Config
from aigate.services import Services

ADMIN_KEY = "test-admin-key-0123456789"
SERVER_KEY = "test-server-key-0123456789"
TOKEN_SECRET = "test-token-secret-0123456789-abcdefgh"
RELAY_KEY = "sk-test-relay-key-0123456789"
APP_ID = "APPTEST"


def free_port() -> int:
    """A free port for a server in another process, which binds it later. Chosen below the
    kernel's ephemeral range (32768 and up), where the port-0 binds of parallel tests
    never land, so nothing takes it in between."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def base_config(db_url: str, sim_url: str, *, redis_url: str = "", **overrides: Any) -> dict:
    """A config document with one app, credits, and a platform of each chat type on the simulator."""
    doc: dict[str, Any] = {
        "server": {"admin_key": ADMIN_KEY},
        "database": {"url": db_url},
        "redis": {"url": redis_url},
        "writer": {"flush_interval_ms": 20},
        "models": [
            {"name": "gpt-4o-mini", "price": {"input_price": 0.15, "output_price": 0.6}},
            {"name": "claude-3-5-haiku", "price": {"input_price": 0.8, "output_price": 4}},
            {"name": "gemini-2.0-flash", "price": {"input_price": 0.1, "output_price": 0.4}},
        ],
        "platforms": [
            {
                "id": "sim-openai",
                "type": "openai",
                "base_url": f"{sim_url}/v1",
                "api_key": "sk-sim",
                "models": ["gpt-4o-mini", "dall-e-3", "text-embedding-3-small", "tts-1"],
                "priority": 10,
                "timeout": {"connect_s": 2, "first_byte_s": 5, "total_s": 20},
            },
            {
                "id": "sim-anthropic",
                "type": "anthropic",
                "base_url": sim_url,
                "api_key": "sk-ant-sim",
                "models": ["claude-3-5-haiku"],
            },
            {
                "id": "sim-gemini",
                "type": "gemini",
                "base_url": sim_url,
                "api_key": "gm-sim",
                "models": ["gemini-2.0-flash"],
            },
        ],
        "apps": [
            {
                "id": APP_ID,
                "name": "Test app",
                "server_keys": [{"name": "backend", "key": SERVER_KEY}],
                "user_token_secret": TOKEN_SECRET,
                "assets": [
                    {
                        "name": "ai_credit",
                        "initial_quantity": 50,
                        "recoverable": True,
                        "recovery_period": 1,
                        "recovery_quantity": 50,
                    }
                ],
                "strategies": [
                    {
                        "name": "free-normal",
                        "model": "gpt-4o-mini",
                        "platforms": ["sim-openai"],
                        "system_prompt": "You play {{ .example_string }}.",
                        "params": {"temperature": 1, "max_tokens": 1000},
                        "history": {"save": True, "context_messages": 20},
                        "cost": {"asset": "ai_credit", "per_request": 1},
                        "limit": {"count": 100, "period": "day"},
                    },
                ],
                "relay_tokens": [{"name": "sdk", "key": RELAY_KEY}],
            }
        ],
    }
    for key, value in overrides.items():
        doc[key] = value
    return doc


@dataclass
class Gateway:
    url: str
    services: Services
    server: uvicorn.Server
    task: asyncio.Task
    session: aiohttp.ClientSession

    def user_token(self, user_id: str, app_id: str = APP_ID, secret: str = TOKEN_SECRET, ttl: int = 3600) -> str:
        return mint_user_token(app_id, user_id, secret, ttl)[0]

    def server_headers(self, key: str = SERVER_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def user_headers(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_token(user_id)}"}

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def flush(self) -> None:
        await self.services.writer.flush()

    async def close(self) -> None:
        await self.session.close()
        self.server.should_exit = True
        await self.task


async def start_gateway(doc: dict | Config) -> Gateway:
    cfg = doc if isinstance(doc, Config) else parse_config(doc, env={})
    # Bind first and hand uvicorn the socket: picking a free port and binding it later
    # lets a parallel test take the same port in between.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            loop="asyncio",
            timeout_graceful_shutdown=5,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up failure
        await asyncio.sleep(0.01)
    return Gateway(
        url=f"http://127.0.0.1:{port}",
        services=app.state.services,
        server=server,
        task=task,
        session=aiohttp.ClientSession(),
    )
