"""Work that must finish although the request that started it was cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_RUNNING: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


def run_detached(coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    """Run ``coro`` in a task of its own, e.g. to save and bill a stream whose client left."""
    task = asyncio.create_task(coro)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task
