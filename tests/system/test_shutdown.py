"""SIGTERM under load: in-flight requests finish and every row they produced is written."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp

from tests.gateway import SERVER_KEY, base_config, free_port
from tests.served import serve


async def test_sigterm_under_load_loses_no_row(tmp_path):
    port, sim_port = free_port(), free_port()
    db = tmp_path / "aigate.db"
    doc = base_config(f"sqlite:///{db}", f"http://127.0.0.1:{sim_port}")
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    doc["simulator"] = {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_ms": 30}
    doc["writer"] = {"flush_interval_ms": 2000, "batch_size": 100_000}  # rows wait in the queue
    doc["apps"][0]["assets"][0]["initial_quantity"] = 100_000
    doc["apps"][0]["strategies"][0].pop("limit")
    proc = await serve(doc, tmp_path, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        answered = 0
        stop = time.monotonic() + 1.5
        body = {
            "strategy": "free-normal",
            "parameters": {"example_string": "x"},
            "messages": [{"role": "user", "content": "hi"}],
        }

        async def client(session: aiohttp.ClientSession, n: int) -> None:
            nonlocal answered
            while time.monotonic() < stop + 5:
                try:
                    async with session.post(
                        f"{url}/bp/server/user/u{n}/ai/chat",
                        json=body,
                        headers={"Authorization": f"Bearer {SERVER_KEY}"},
                    ) as resp:
                        await resp.read()
                        assert resp.status == 200
                        answered += 1
                except aiohttp.ClientError:
                    return  # the server stopped accepting: this client is done

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
            clients = [asyncio.create_task(client(session, n)) for n in range(20)]
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*clients)
        await asyncio.wait_for(proc.wait(), 60)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.returncode in (0, -signal.SIGTERM), (await proc.stderr.read()).decode()[-2000:]
        assert answered > 20
        with sqlite3.connect(db) as conn:
            logs = conn.execute("SELECT count(*) FROM usage_logs").fetchone()[0]
            records = conn.execute("SELECT count(*) FROM ai_requests").fetchone()[0]
        assert logs == answered and records == answered
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
