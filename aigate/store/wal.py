"""SQLite WAL checkpoints between the writer's batches, never inside a commit.

With SQLite's default (``wal_autocheckpoint=1000``) the commit that pushes the WAL past
1,000 pages copies the whole log into the database file and syncs both files before
returning: 30-60 ms here, and a request whose credit reservation shares that commit
waits for it (the c=1 latency tail). So the connection never checkpoints on its own
(``wal_autocheckpoint=0``, set in ``aigate.store.db``) and the writer's upkeep does it,
once the log holds ``CHECKPOINT_BYTES``, in two parts:

1. a PASSIVE checkpoint from a second connection in a worker thread copies the log into
   the database while the writer goes on committing and flushing (nothing waits for it);
2. a PASSIVE checkpoint on the writer's own connection, outside any transaction
   (``run_outside``), copies the few frames committed meanwhile (a few milliseconds).
   Nothing else reads the log at that instant, so it completes, and the next commit
   restarts the log from its beginning and truncates the file to
   ``journal_size_limit`` (``aigate.store.db.TRUNCATE_TO_BYTES``).

The first part alone never completes under constant writes (the log never restarts and
grows without bound); the second alone holds the writer's connection for the whole copy.
If the log reaches twice ``CHECKPOINT_BYTES`` before the copy is done, the writer waits
for the copy. The file's size is therefore the log written since the last checkpoint
and stays under about twice ``CHECKPOINT_BYTES`` under any write rate. If another process holds the log open and the
checkpoint cannot finish, the file passes ``HARD_CAP_BYTES`` and a TRUNCATE checkpoint
waits for that reader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store.script import run_outside

log = logging.getLogger("aigate.wal")

CHECKPOINT_BYTES = 8 * 1024 * 1024  # two of the default autocheckpoint's 1,000 pages
HARD_CAP_BYTES = 64 * 1024 * 1024


class WalCheckpointer:
    """The writer's upkeep step for one SQLite database file."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        hard_cap_bytes: int = HARD_CAP_BYTES,
    ) -> None:
        self.engine = engine
        database = engine.url.database
        self.wal_path = f"{database}-wal" if database and database != ":memory:" else None
        self.checkpoint_bytes = checkpoint_bytes
        self.hard_cap_bytes = hard_cap_bytes
        self.checkpoints = 0
        self._copier: sqlite3.Connection | None = None  # the second connection (part 1)
        self._copying: asyncio.Future | None = None

    def wal_size(self) -> int:
        try:
            return os.stat(self.wal_path).st_size if self.wal_path else 0
        except FileNotFoundError:
            return 0

    async def step(self, busy: bool = False) -> bool:
        """Once the log holds ``checkpoint_bytes``, start the copy from the second
        connection and return (the writer goes on meanwhile); at the first step that
        finds it done, finish on the writer's connection. Never asks to be repeated."""
        size = self.wal_size()
        if self._copying is not None:
            if not self._copying.done():
                if size < 2 * self.checkpoint_bytes:
                    return False
                # the log grows faster than the copy: the writer waits for it, so the
                # file stays bounded whatever the write rate
                await asyncio.gather(self._copying, return_exceptions=True)
            copy, self._copying = self._copying, None
            if copy.exception() is not None:  # the writer's own checkpoint does the whole job
                log.warning("WAL pre-copy failed: %s", copy.exception())
        elif size < self.checkpoint_bytes:
            return False
        elif size < self.hard_cap_bytes:
            self._copying = asyncio.ensure_future(asyncio.to_thread(self._copy))
            return False
        mode = "TRUNCATE" if size >= self.hard_cap_bytes else "PASSIVE"
        blocked, frames, copied = await run_outside(self.engine, lambda conn: _checkpoint(conn, mode))
        self.checkpoints += 1
        if blocked or copied < frames:
            log.warning(
                "WAL checkpoint (%s) incomplete: %d of %d frames copied (a reader elsewhere)", mode, copied, frames
            )
        return False

    def _copy(self) -> None:
        if self._copier is None:
            assert self.wal_path is not None  # a file database: it has a log
            self._copier = sqlite3.connect(self.wal_path.removesuffix("-wal"), check_same_thread=False)
        _checkpoint(self._copier, "PASSIVE")

    async def aclose(self) -> None:
        if self._copying is not None:
            await asyncio.gather(self._copying, return_exceptions=True)
            self._copying = None
        if self._copier is not None:
            self._copier.close()
            self._copier = None


def _checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(frames), int(copied)
