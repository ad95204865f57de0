"""Work that must finish although the request that started it was cancelled."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

_RUNNING: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


def run_detached(coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any]) -> asyncio.Task:
    """Run ``coro`` in a task of its own, e.g. to save and bill a stream whose client left."""
    task = asyncio.create_task(coro)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


async def finish_shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` so that cancelling the caller cannot stop it half way.

    It runs at once, in the caller, up to its first real suspension; most settlements
    never suspend (the rows are only queued), and then no task is made. Only if it does
    suspend does the rest go on in a detached task, which the caller awaits shielded: a
    cancellation of the caller then leaves it running to its end, as ``asyncio.shield``
    of a task would."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value
    return await asyncio.shield(run_detached(_resume(coro, waiting_on)))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    """Drive a coroutine that already ran up to ``waiting_on`` (the future it awaits), as
    its own task would: the task's sends and throws are passed through to it."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # noqa: BLE001 - cancellations are passed on, like any throw
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration as done:
                return done.value
