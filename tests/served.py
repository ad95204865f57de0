"""``aigate serve`` as its own process: for what only a real process shows (signals, a
killed instance, the process's own limits)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import yaml


async def wait_ready(url: str, proc: asyncio.subprocess.Process, timeout_s: float = 90) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.1)):
            if proc.returncode is not None:
                raise RuntimeError("aigate exited during start-up")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("aigate did not start")


async def serve(doc: dict, tmp_path: Path, *, stderr: int = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    """Start ``aigate serve`` with the configuration ``doc`` (its ``server.listen`` set)
    and wait until it answers; the caller stops it."""
    path = tmp_path / "aigate.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aigate.cli",
        "serve",
        "--config",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "AIGATE_LOG_LEVEL": "WARNING"},
    )
    try:
        await wait_ready(f"http://{doc['server']['listen']}", proc)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc
