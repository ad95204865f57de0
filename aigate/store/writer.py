"""The batched writer: log rows and records leave the request path through here.

One writer per process owns a bounded queue. It commits what is queued in one
transaction every ``flush_interval`` or as soon as ``batch_size`` rows wait, whichever
comes first, as background work (``run_background``: on SQLite a request's scripts
waiting beside a flush run first). On SQLite a request's script that starts waiting
while a flush runs also cuts the flush short: the flush commits the rows written so far
(every ``CHECK_ROWS`` rows it asks ``db.yield_point()``), the request's script runs,
and the rest follows in the next transaction, so a request waits for a few rows, not a
whole batch. Guarantees:

* back-pressure, never loss: a full queue makes producers wait in ``put`` while the
  database works;
* a database outage (``aigate.store.outage.is_outage``) is retried with exponential
  backoff, keeping the rows;
* during an outage a full queue does not make anyone wait: ``put`` appends the row to
  the process's local journal (``aigate.store.journal``, fsync per batch) and returns.
  From then on every row goes to the journal until it is replayed, so rows keep their
  order (an AI request record's final state never lands before its first one); the
  writer replays it once the queue is written, and replays at start-up the journals of
  processes that are gone. Replay is idempotent across crashes;
* a row the database rejects on its own (a data error) is isolated so it cannot block
  the rows behind it; it is counted (``aigate_writer_rejected_total``) and logged with its
  content;
* ``stop`` drains everything queued before returning (called on SIGTERM/SIGINT); if the
  database is still down at its deadline, what is left goes to the journal;
* upkeep hooks (``after_commit``) run in the writer's task after each committed batch,
  off the request path: a bounded step of deferred work (on SQLite, indexing new log rows
  for the keyword search), repeated while the queue is empty;
* ``put(..., wait=True)`` is a group commit: it returns once the row is durable, and
  makes the writer flush at once instead of waiting for the next tick. It never hangs on
  an outage: when the database is unavailable (or the wait exceeds ``wait_timeout_s``)
  it raises ``DatabaseUnavailable`` (a 503 on the call path); the row stays queued and is
  written once the database is back. ``flush`` does the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate import metrics
from aigate.store.journal import (
    PROGRESS_DELETE_SQL,
    PROGRESS_READ_SQL,
    PROGRESS_SQL,
    Entry,
    JournalFile,
    encode,
    orphans,
)
from aigate.store.outage import DatabaseUnavailable, is_outage
from aigate.store.script import run_background, run_script

log = logging.getLogger("aigate.writer")

# A transaction script (see aigate.store.script): writes a batch of rows of one kind.
Handler = Callable[[Any, list[dict[str, Any]]], None]
# One bounded step of deferred work, told whether rows wait to be written (False: the
# writer is idle); returns True when more work is waiting.
Upkeep = Callable[[bool], Awaitable[bool]]
Rows = list[tuple[str, dict[str, Any]]]  # (kind, row), in arrival order
Progress = tuple[str, list[int]]  # a journal's name, and each row's sequence number in it
# Rows between two yield points of a flush on SQLite (about 0.5 ms of writing): what a
# request's script waits for at most. A part a request cuts off costs one more commit:
# 2 rows cost 60 % more flush CPU; 32 rows (when each part also paid its rollups) kept
# the tail at concurrency 1 higher (bench/CHANGES.md).
CHECK_ROWS = 8


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
        journal_dir: str | Path = "./data/journal",
        wait_timeout_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self.journal_dir = Path(journal_dir)
        self.wait_timeout_s = wait_timeout_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._handlers: dict[str, Handler] = {}
        self._finishers: dict[str, Handler] = {}
        self._upkeep: list[Upkeep] = []
        self._upkeep_idle = asyncio.Event()  # no upkeep step running: stop() waits for it
        self._upkeep_idle.set()
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._outage = asyncio.Event()  # set from a failed write until the next success
        self._changed: asyncio.Future | None = None  # resolved when room or an outage appears
        # the journal: rows spilled but not yet appended, the file, and whether new rows
        # must go there (until it is replayed)
        self._journal: JournalFile | None = None
        self._journal_lock = asyncio.Lock()
        self._spill: list[Entry] = []
        self._spiller: asyncio.Task | None = None
        self._next_seq = 1
        self._journaling = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._inflight: Rows = []  # the batch's rows not yet committed, journaled if shutdown cuts it off
        self.rows_written = 0
        self.rows_rejected = 0
        self.rows_journaled = 0
        self.outage_retries = 0

    def register(self, kind: str, handler: Handler, *, finish: Handler | None = None) -> None:
        """``handler(db, rows)`` writes rows of one kind inside the flush transaction (a
        transaction script: plain SQL through ``db.rows`` / ``db.many``), called once per
        ``CHECK_ROWS`` rows; ``finish(db, rows)`` once per transaction with every row of
        the kind it wrote (sums kept per batch, e.g. the rollups)."""
        self._handlers[kind] = handler
        if finish is not None:
            self._finishers[kind] = finish

    def after_commit(self, step: Upkeep) -> None:
        """Run ``step(busy)`` after each committed batch, and again while no rows wait and
        it returns True. It runs in the writer's task: keep each step short."""
        self._upkeep.append(step)

    @property
    def in_outage(self) -> bool:
        return self._outage.is_set()

    # --- producers

    async def put(self, kind: str, row: dict[str, Any], *, wait: bool = False) -> None:
        if kind not in self._handlers:
            raise KeyError(f"no writer handler for {kind!r}")
        done = asyncio.get_running_loop().create_future() if wait else None
        if not await self._enqueue(_Item(kind, row, time.monotonic(), done)):
            self._to_journal(kind, row)
            if wait:
                await self._bounded(self._drained.wait(), self.wait_timeout_s)
            return
        if done is not None or self._queue.qsize() >= self.batch_size:
            self._wake.set()
        if done is not None:
            await self._bounded(done, self.wait_timeout_s)

    async def flush(self, *, through_outage: bool = False) -> None:
        """Return once every row queued or journaled before this call is committed.
        During an outage raise ``DatabaseUnavailable`` at once, unless ``through_outage``
        (shutdown, tests), which waits for the database however long it takes."""
        if self._outage.is_set() and not through_outage:
            raise DatabaseUnavailable("the database is unavailable; queued rows are kept")
        done = asyncio.get_running_loop().create_future()
        marker = _Item("", None, time.monotonic(), done)
        while not await self._enqueue(marker, through_outage=through_outage):
            if not through_outage:
                raise DatabaseUnavailable("the database is unavailable; queued rows are kept")
            await self._next_change()
        self._wake.set()
        if through_outage:
            await done
            await self._drained.wait()
        else:
            await self._bounded(done, None)
            await self._bounded(self._drained.wait(), None)

    async def _enqueue(self, item: _Item, *, through_outage: bool = False) -> bool:
        """Queue the item, waiting for room while the database works; False when it
        must go to the journal instead (the journal is in use, or the queue is full
        during an outage)."""
        while True:
            if self._journaling and item.row is not None:
                return False
            if not self._queue.full():
                self._queue.put_nowait(item)
                return True
            if self._outage.is_set() and not through_outage:
                return False
            await self._next_change()

    async def _bounded(self, awaitable, timeout_s: float | None) -> None:
        """Await ``awaitable`` unless an outage begins or ``timeout_s`` passes first."""
        if self._outage.is_set():
            _close(awaitable)
            raise DatabaseUnavailable("the database is unavailable; the row is kept and written later")
        work = asyncio.ensure_future(awaitable)
        outage = asyncio.ensure_future(self._outage.wait())
        try:
            await asyncio.wait({work, outage}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            outage.cancel()
        if work.done():
            work.result()
            return
        if not isinstance(awaitable, asyncio.Future):
            work.cancel()
        raise DatabaseUnavailable("the database is unavailable; the row is kept and written later")

    async def _next_change(self) -> None:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    def _notify(self) -> None:
        """Wake producers waiting for room (a batch left the queue) or for an outage."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    # --- the journal

    def _to_journal(self, kind: str, row: dict[str, Any]) -> None:
        if not self._journaling:
            log.warning(
                "database unavailable and the writer's queue is full: rows go to the journal in %s", self.journal_dir
            )
        self._journaling = True
        self._drained.clear()
        self._spill.append((self._next_seq, kind, row))
        self._next_seq += 1
        self.rows_journaled += 1
        metrics.WRITER_JOURNALED.inc()
        if self._spiller is None or self._spiller.done():
            self._spiller = asyncio.create_task(self._append_spilled(), name="writer-journal")

    async def _append_spilled(self) -> None:
        """Append what was spilled, a batch and one fsync at a time, until nothing waits."""
        while self._spill:
            batch, self._spill = self._spill, []
            try:
                async with self._journal_lock:
                    if self._journal is None:
                        self._journal = await asyncio.to_thread(JournalFile.create, self.journal_dir)
                    await asyncio.to_thread(self._journal.append, encode(batch))
            except OSError:  # the local disk failed too: keep the rows in memory and retry
                log.exception("cannot append to the writer journal in %s; retrying", self.journal_dir)
                self._spill = batch + self._spill
                await asyncio.sleep(1.0)
        self._wake.set()

    async def _replay_own(self) -> None:
        """Write the journal into the database, oldest first; once it is all written
        (nothing spilled is still on its way to the file), rows go to the queue again."""
        while True:
            if self._spiller is not None and not self._spiller.done():
                await asyncio.shield(self._spiller)
                continue
            journal = self._journal
            entries = await asyncio.to_thread(journal.read, self.batch_size) if journal else []
            if entries:
                assert journal is not None  # entries come only from a journal
                await self._write_entries(journal.name, entries)
                continue
            if self._spill or (self._spiller is not None and not self._spiller.done()):
                continue
            self._journaling = False  # from here on rows are queued again
            if journal is not None:
                async with self._journal_lock:
                    await asyncio.to_thread(journal.truncate)  # seq goes on: progress stays valid
            self._drained.set()
            log.info("writer journal replayed (%d rows journaled so far)", self.rows_journaled)
            return

    async def _replay_orphans(self) -> None:
        """Replay, then delete, the journals of processes that are gone."""
        own = self._journal.name if self._journal else None
        for path in await asyncio.to_thread(orphans, self.journal_dir, own):
            journal = await asyncio.to_thread(JournalFile.claim, path)
            if journal is None:
                continue
            done_through = await self._until_written(partial(_read_progress, self.engine, journal.name))
            replayed = 0
            while entries := await asyncio.to_thread(journal.read, self.batch_size):
                entries = [e for e in entries if e[0] > done_through]
                if entries:
                    await self._write_entries(journal.name, entries)
                    replayed += len(entries)
            await asyncio.to_thread(journal.delete)
            await self._until_written(partial(run_script, self.engine, _forget, journal.name))
            log.warning("replayed %d rows from the journal %s of a stopped process", replayed, path)

    async def _write_entries(self, journal: str, entries: list[Entry]) -> None:
        while entries:
            rows = [(k, r) for _, k, r in entries]
            written = await self._write_until_done(rows, progress=(journal, [s for s, _, _ in entries]))
            entries = entries[written:]

    # --- the writer task

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="batch-writer")

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Drain the queue and the journal, then stop. Rows still unwritten at the
        deadline stay in the journal (replayed at the next start) or are logged."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(through_outage=True), timeout_s)
        except TimeoutError:
            log.error(
                "database still unavailable at shutdown: unwritten rows go to the journal in %s", self.journal_dir
            )
        self._stopping = True  # a running upkeep step finishes, no other starts
        await self._upkeep_idle.wait()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._stopping = False
        self._task = None
        # what the deadline left unwritten (the batch being retried, the queue) is kept in
        # the journal; the next start replays it
        leftovers = self._inflight + [(i.kind, i.row) for i in _drain(self._queue) if i.row is not None]
        self._inflight = []
        for kind, row in leftovers:
            self._to_journal(kind, row)
        if self._spiller is not None:
            await asyncio.gather(self._spiller, return_exceptions=True)
        journal, self._journal = self._journal, None
        if journal is not None:
            if self._drained.is_set():
                await asyncio.to_thread(journal.delete)
                try:
                    await run_script(self.engine, _forget, journal.name)
                except Exception:  # a leftover progress row is harmless
                    log.warning("could not forget the journal %s", journal.name, exc_info=True)
            else:
                journal.close()

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
        self._notify()  # room in the queue
        return batch

    async def _run(self) -> None:
        await self._replay_orphans()
        while True:
            if self._queue.empty() and self._journaling:
                await self._replay_own()
                continue
            batch = await self._next_batch()
            metrics.WRITER_LAG.set(time.monotonic() - batch[0].enqueued)
            self._inflight = [(i.kind, i.row) for i in batch if i.row is not None]
            while self._inflight:
                written = await self._write_until_done(self._inflight)
                self._inflight = self._inflight[written:]  # committed: a shutdown does not journal it
            for item in batch:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)
                self._queue.task_done()
            metrics.WRITER_QUEUE.set(self._queue.qsize())
            self._upkeep_idle.clear()
            try:
                await self._run_upkeep()
            finally:
                self._upkeep_idle.set()

    async def _run_upkeep(self) -> None:
        """One step of each upkeep hook, then more while nothing waits to be written."""
        for step in self._upkeep:
            more = True
            first = True
            while more and not self._stopping and (first or (self._queue.empty() and not self._journaling)):
                first = False
                try:
                    more = await step(not self._queue.empty())
                except Exception as exc:  # deferred work never blocks the rows
                    if not is_outage(exc):
                        log.exception("writer upkeep step failed")
                    more = False

    async def _until_written(self, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt`` until it succeeds, waiting out outages with backoff."""
        backoff = 0.05
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._in_outage(exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self._outage.clear()
            return result

    def _in_outage(self, exc: BaseException, backoff: float) -> None:
        if not self._outage.is_set():
            self._outage.set()
            self._notify()  # producers waiting for room may now journal instead
        self.outage_retries += 1
        metrics.WRITER_RETRIES.inc()
        log.warning("database unavailable, retrying in %.2fs: %s", backoff, exc)

    async def _write_until_done(self, rows: Rows, *, progress: Progress | None = None) -> int:
        """Commit the rows (and the journal progress: its name and each row's sequence
        number) in one transaction, waiting out outages; if the database rejects the batch
        for its data, row by row. Returns how many rows were committed: all of them, or
        on SQLite the first ones when a request's script cut the flush short."""
        if not rows:
            return 0
        try:
            written = await self._until_written(
                lambda: run_background(self.engine, _flush, self._handlers, self._finishers, rows, progress)
            )
        except Exception:
            await self._write_one_by_one(rows, progress)
            return len(rows)
        self.rows_written += written
        metrics.WRITER_ROWS.inc(written)
        return written

    async def _write_one_by_one(self, rows: Rows, progress: Progress | None) -> None:
        for i, (kind, row) in enumerate(rows):
            step = (progress[0], progress[1][i : i + 1]) if progress else None
            try:
                await self._until_written(
                    partial(run_script, self.engine, _flush, self._handlers, self._finishers, [(kind, row)], step)
                )
                self.rows_written += 1
                metrics.WRITER_ROWS.inc()
            except Exception as exc:
                self.rows_rejected += 1
                metrics.WRITER_REJECTED.inc()
                log.error("row rejected by the database (%s): %s %r", exc, kind, row)
                if step is not None:  # the journal moves past the rejected row
                    await self._until_written(partial(run_script, self.engine, _save_progress, step[0], step[1][0]))


def _flush(
    db, handlers: dict[str, Handler], finishers: dict[str, Handler], rows: Rows, progress: Progress | None
) -> int:
    """Write the rows, ``CHECK_ROWS`` at a time on SQLite (all at once elsewhere: one
    round trip per kind), until all are written or a request's script waits for the
    connection; then the finishers over what was written. Returns how many rows this
    transaction holds (always at least ``CHECK_ROWS``, or all)."""
    step = CHECK_ROWS if db.dialect == "sqlite" else max(len(rows), 1)
    written: dict[str, list[dict[str, Any]]] = {}
    done = 0
    while done < len(rows):
        part: dict[str, list[dict[str, Any]]] = {}
        for kind, row in rows[done : done + step]:
            part.setdefault(kind, []).append(row)
        for kind, group in part.items():
            handlers[kind](db, group)
            written.setdefault(kind, []).extend(group)
        done = min(done + step, len(rows))
        if db.yield_point():
            break
    for kind, group in written.items():
        finish = finishers.get(kind)
        if finish is not None:
            finish(db, group)
    if progress is not None:
        _save_progress(db, progress[0], progress[1][done - 1])
    return done


def _save_progress(db, name: str, seq: int) -> None:
    db.rows(PROGRESS_SQL, {"name": name, "seq": seq})


async def _read_progress(engine: AsyncEngine, name: str) -> int:
    rows = await run_script(engine, lambda db: db.rows(PROGRESS_READ_SQL, {"name": name}))
    return int(rows[0][0]) if rows else 0


def _forget(db, name: str) -> None:
    db.rows(PROGRESS_DELETE_SQL, {"name": name})


def _drain(queue: asyncio.Queue[_Item]) -> list[_Item]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _close(awaitable: Any) -> None:
    if hasattr(awaitable, "close"):  # a coroutine never awaited: no "never awaited" warning
        awaitable.close()
