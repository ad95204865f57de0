"""SQLite's WAL checkpoints, moved out of the commits that requests wait for.

By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: it
copies the pages into the database file and syncs that file, which holds the one writer
connection for 5-10 ms about once per 90 App API calls (~11 WAL pages each), and a
request's reservation or history write waiting for that connection waits with it.
Instead the engine's connection runs with ``wal_autocheckpoint=0`` while this task runs,
and the task:

1. every ``interval_s``, copies the WAL into the database file from a connection of its
   own, in a thread of its own (a PASSIVE checkpoint: commits go on meanwhile). Before a
   finish it syncs the database file there too: SQLite syncs it only at the checkpoint
   that reaches the WAL's end, which is the finish below, and a request waiting for that
   finish would wait for the sync of every page the copies wrote. Between finishes the
   pages need no sync: the WAL, synced by each copy before it copies, still holds them;
2. every ``finish_interval_s``, right after a copy, finishes on the writer's own
   connection, in a hop of the lane between two of its transactions
   (``run_maintenance``: a request's scripts waiting beside it run first). No commit can
   land meanwhile, so a PASSIVE checkpoint there copies the frames committed during the
   copy and leaves the whole WAL in the database; the connection's next transaction
   starts the WAL over from its beginning.

The finish is the one step requests wait for, and it syncs both the WAL and the database
file: 1-3 ms, and up to ~10 ms in an hour of slow disk writes. After every copy (ten
times a second) it set the c=1 p99; once a second it delays too few calls to set it
(bench/CHANGES.md). Between two finishes the WAL holds about a second of commits; the
copies keep the part not yet in the database file short, so a read's search of the WAL
stays short too. A copy that reaches the WAL's end does not let the WAL start over (only
a finish on the writer's connection does), so the finish runs on time even then.

A round is background work and takes its turn with the writer's flushes and upkeep
(``aigate.store.script.background_turn``): none of them runs during the copy, where it
would compete with the copy's thread for the core while requests' scripts wait for it.

A short interval (``INTERVAL_S``) keeps each copy small: the calls a copy slows down are
those that overlap it, and a shorter copy slows them less. At concurrency 1 the added
p99 was lowest with a round every 0.05-0.1 s, against every 0.25 s or once a second
(0.25 s again with the finish once a second); 0.05 s cost more CPU for no lower p99
(bench/CHANGES.md).

If a finish cannot reach the WAL's end (a reader holds an old snapshot), the next
round tries again. A round that finds the WAL as the last one left it, all copied,
stops after the copy: an idle database takes no hop of the writer's lane.

The sync goes through a descriptor of the database file opened here, and closing any
descriptor of a file drops every POSIX lock the process holds on it, SQLite's included:
``close`` runs only once the engine's connections are closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store.script import background_turn, run_maintenance, run_script

log = logging.getLogger("aigate.checkpoint")

NO_AUTOCHECKPOINT = "PRAGMA wal_autocheckpoint=0"
INTERVAL_S = 0.1  # between two copies (module docstring)
FINISH_INTERVAL_S = 1.0  # between two finishes on the writer's lane (module docstring)


class WalCheckpointer:
    def __init__(
        self, engine: AsyncEngine, *, interval_s: float = INTERVAL_S, finish_interval_s: float = FINISH_INTERVAL_S
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.rounds_per_finish = max(1, round(finish_interval_s / interval_s))
        self.path = engine.url.database or ""  # a file database (``applies_to``)
        self.finished = 0  # checkpoints that left the whole WAL in the database
        self._side: sqlite3.Connection | None = None
        self._db_file: int | None = None  # a descriptor of the database file, for its sync
        self._seen: tuple[int, int] | None = None  # (frames, copied) at the last look
        self._unsynced = False  # the copies wrote pages into the database file since its sync
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="wal-checkpoint")
        self._task: asyncio.Task | None = None

    @staticmethod
    def applies_to(engine: AsyncEngine) -> bool:
        return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wal-checkpointer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._thread.shutdown(wait=True)
        side, self._side = self._side, None
        if side is not None:
            side.close()

    def close(self) -> None:
        """After ``stop`` and after the engine's connections are closed (module docstring)."""
        db_file, self._db_file = self._db_file, None
        if db_file is not None:
            os.close(db_file)

    async def _run(self) -> None:
        rounds = 0  # since the last finish round that left the whole WAL in the database file
        while True:
            await asyncio.sleep(self.interval_s)
            rounds += 1
            finish = rounds >= self.rounds_per_finish
            try:
                if await self.checkpoint(finish=finish) and finish:
                    rounds = 0
            except Exception:  # the next interval tries again; SQLite's WAL stays valid
                log.warning("WAL checkpoint failed", exc_info=True)

    async def checkpoint(self, *, finish: bool = True) -> bool:
        """One round: copy, then (with ``finish``) finish on the writer's lane, in the
        background work's turn (no flush or upkeep step runs meanwhile). True when the
        whole WAL is in the database file."""
        async with background_turn(self.engine):
            return await self._round(finish)

    async def _round(self, finish: bool) -> bool:
        last = self._seen
        frames, copied = await asyncio.get_running_loop().run_in_executor(self._thread, self._copy, finish)
        if frames <= 0:
            return True  # the WAL is empty (or was just started over)
        if not finish:
            return frames == copied
        if (frames, copied) == last and frames == copied:  # nothing committed since: idle
            return True
        frames, copied = self._seen = await run_maintenance(self.engine, _finish)
        if frames != copied:  # a reader holds an older snapshot: the next round
            return False
        self.finished += 1
        return True

    def _copy(self, sync: bool) -> tuple[int, int]:
        """A PASSIVE checkpoint from the side connection: (frames in the WAL, frames
        copied into the database). With ``sync`` (before a finish) it also syncs what
        the copies wrote into the database file since the last sync."""
        if self._side is None:
            self._side = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self._db_file is None:
            self._db_file = os.open(self.path, os.O_RDONLY)
        seen = _finish(self._side)
        if seen[1] > 0 and seen != self._seen:  # pages copied since the last look
            self._unsynced = True
        if sync and self._unsynced:
            os.fdatasync(self._db_file)  # here, not in the finish that requests wait for
            self._unsynced = False
        self._seen = seen
        return seen


def _finish(conn: sqlite3.Connection) -> tuple[int, int]:
    """A PASSIVE checkpoint on ``conn``: (frames in the WAL, frames copied). Run on the
    writer's connection between two of its transactions, no frame can be appended
    meanwhile, so it catches up with the whole WAL and the next transaction starts it over."""
    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames), int(copied)


def _own_checkpoints(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(NO_AUTOCHECKPOINT)
    cur.close()


async def start_checkpointer(
    engine: AsyncEngine, *, interval_s: float = INTERVAL_S, finish_interval_s: float = FINISH_INTERVAL_S
) -> WalCheckpointer | None:
    """Take over the checkpoints of a SQLite file database: None for anything else."""
    if not WalCheckpointer.applies_to(engine):
        return None
    event.listen(engine.sync_engine, "connect", _own_checkpoints)  # a connection opened later
    await run_script(engine, lambda db: db.rows(NO_AUTOCHECKPOINT))  # the one open now
    checkpointer = WalCheckpointer(engine, interval_s=interval_s, finish_interval_s=finish_interval_s)
    checkpointer.start()
    return checkpointer
