"""The batched writer: log rows and records leave the request path through here.

One writer per process owns a bounded queue. It commits what is queued in one
transaction every ``flush_interval`` or as soon as ``batch_size`` rows wait, whichever
comes first. Guarantees:

* back-pressure, never loss: a full queue makes producers wait in ``put``;
* a database outage is retried with exponential backoff, keeping the rows;
* a row the database rejects on its own (a data error) is isolated so it cannot block
  the rows behind it; it is logged with its content;
* ``stop`` drains everything queued before returning (called on SIGTERM/SIGINT);
* ``put(..., wait=True)`` is a group commit: it returns once the row is durable, and
  makes the writer flush at once instead of waiting for the next tick.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate import metrics
from aigate.store.outage import is_outage
from aigate.store.script import run_script

log = logging.getLogger("aigate.writer")

# A transaction script (see aigate.store.script): writes a batch of rows of one kind.
Handler = Callable[[Any, list[dict[str, Any]]], None]


@dataclass(slots=True)
class _Item:
    kind: str
    row: dict[str, Any] | None
    enqueued: float
    done: asyncio.Future | None = None


class BatchWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        flush_interval_s: float = 0.1,
        batch_size: int = 500,
        queue_size: int = 20_000,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._handlers: dict[str, Handler] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.rows_written = 0
        self.outage_retries = 0

    def register(self, kind: str, handler: Handler) -> None:
        """``handler(db, rows)`` writes a batch of rows of one kind inside the flush
        transaction (a transaction script: plain SQL through ``db.rows`` / ``db.many``)."""
        self._handlers[kind] = handler

    async def put(self, kind: str, row: dict[str, Any], *, wait: bool = False) -> None:
        if kind not in self._handlers:
            raise KeyError(f"no writer handler for {kind!r}")
        done = asyncio.get_running_loop().create_future() if wait else None
        await self._queue.put(_Item(kind, row, time.monotonic(), done))
        if done is not None or self._queue.qsize() >= self.batch_size:
            self._wake.set()
        if done is not None:
            await done

    async def flush(self) -> None:
        """Return once every row queued before this call is committed."""
        done = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item("", None, time.monotonic(), done))
        self._wake.set()
        await done

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="batch-writer")

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Drain the queue, then stop. Rows still unwritten at the deadline are logged."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            log.error("writer stopped with %d rows unwritten", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _next_batch(self) -> list[_Item]:
        first = await self._queue.get()
        if first.done is None and not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
        self._wake.clear()
        batch = [first]
        while len(batch) < self.batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if not self._queue.empty() and self._queue.qsize() >= self.batch_size:
            self._wake.set()
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            metrics.WRITER_LAG.set(time.monotonic() - batch[0].enqueued)
            await self._write_until_done(batch)
            for item in batch:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)
                self._queue.task_done()
            metrics.WRITER_QUEUE.set(self._queue.qsize())

    async def _write_until_done(self, batch: list[_Item]) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in batch:
            if item.row is not None:
                groups.setdefault(item.kind, []).append(item.row)
        if not groups:
            return
        backoff = 0.05
        while True:
            try:
                await self._write(groups)
                count = sum(len(rows) for rows in groups.values())
                self.rows_written += count
                metrics.WRITER_ROWS.inc(count)
                return
            except Exception as exc:
                if not is_outage(exc):
                    await self._write_one_by_one(groups)
                    return
                self.outage_retries += 1
                metrics.WRITER_RETRIES.inc()
                log.warning("database unavailable, retrying in %.2fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _write(self, groups: dict[str, list[dict[str, Any]]]) -> None:
        await run_script(self.engine, _flush, self._handlers, groups)

    async def _write_one_by_one(self, groups: dict[str, list[dict[str, Any]]]) -> None:
        for kind, rows in groups.items():
            for row in rows:
                backoff = 0.05
                while True:
                    try:
                        await self._write({kind: [row]})
                        self.rows_written += 1
                        break
                    except Exception as exc:
                        if is_outage(exc):
                            await asyncio.sleep(backoff)
                            backoff = min(backoff * 2, self.max_backoff_s)
                            continue
                        metrics.WRITER_REJECTED.inc()
                        log.error("row rejected by the database (%s): %s %r", exc, kind, row)
                        break


def _flush(db, handlers: dict[str, Handler], groups: dict[str, list[dict[str, Any]]]) -> None:
    for kind, rows in groups.items():
        handlers[kind](db, rows)
