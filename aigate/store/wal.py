"""SQLite WAL checkpoints between the writer's batches, never inside a commit.

With SQLite's default (``wal_autocheckpoint=1000``) the commit that pushes the WAL past
1,000 pages copies the whole log into the database file and syncs it before returning:
a request whose credit reservation shares that commit waits tens of milliseconds (the
c=1 latency tail). So the connection never checkpoints on its own (``wal_autocheckpoint=0``,
set in ``aigate.store.db``), and the writer's upkeep runs the checkpoint after a batch,
on the same connection but outside any transaction (``run_outside``). No other
connection of the process reads the file, so a PASSIVE checkpoint there copies every
frame; the next commit then restarts the log from its beginning and truncates the file
to ``journal_size_limit`` (``aigate.store.db.TRUNCATE_TO_BYTES``). The file's size is therefore the log
written since the last checkpoint, and it stays near ``CHECKPOINT_BYTES`` under any
write rate. (A checkpoint from a second connection, racing the writer, never completes
under constant writes, so the log never restarts.) If another process holds the log
open and a PASSIVE checkpoint cannot finish, the file passes ``HARD_CAP_BYTES`` and a
TRUNCATE checkpoint waits for that reader.
"""

from __future__ import annotations

import logging
import os
import sqlite3

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store.script import run_outside

log = logging.getLogger("aigate.wal")

CHECKPOINT_BYTES = 4 * 1024 * 1024  # the default autocheckpoint's 1,000 pages of 4 KiB
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

    def wal_size(self) -> int:
        try:
            return os.stat(self.wal_path).st_size if self.wal_path else 0
        except FileNotFoundError:
            return 0

    async def step(self) -> bool:
        """Checkpoint once the log holds ``checkpoint_bytes``; never asks to be repeated
        (the next batch's commit is what restarts the log)."""
        size = self.wal_size()
        if size < self.checkpoint_bytes:
            return False
        mode = "TRUNCATE" if size >= self.hard_cap_bytes else "PASSIVE"
        busy, frames, copied = await run_outside(self.engine, lambda conn: _checkpoint(conn, mode))
        self.checkpoints += 1
        if busy or copied < frames:
            log.warning(
                "WAL checkpoint (%s) incomplete: %d of %d frames copied (a reader elsewhere)", mode, copied, frames
            )
        return False


def _checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(frames), int(copied)
