"""Deferred work over the log rows above a watermark, done between the writer's batches.

On SQLite some work on new usage-log rows (the keyword index, the rollups) is kept out of
the writer's flush, whose transaction every request's script waits behind, and done in
batches after the writer's commits instead: a transaction script moves a watermark over
the rows it handled in the same transaction, so a crash never handles a row twice or
skips one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store.script import run_background

# A transaction script: handles up to ``limit`` rows above its watermark, returns how many.
Batch = Callable[..., int]
_NEXT_IDS_SQL = "SELECT max(id), count(*) FROM (SELECT id FROM usage_logs WHERE id > :done ORDER BY id LIMIT :limit)"


def next_log_rows(db, watermark: str, limit: int) -> tuple[dict[str, int], int]:
    """The next batch of at most ``limit`` log rows above ``watermark`` (``"table.column"``,
    a one-row table): its id span ``{"done", "upto"}`` (``done < id <= upto``) and how
    many rows it holds (0: nothing new)."""
    table, column = watermark.split(".")
    [(done,)] = db.rows(f"SELECT {column} FROM {table}")
    [(upto, count)] = db.rows(_NEXT_IDS_SQL, {"done": done, "limit": limit})
    return {"done": done, "upto": upto}, int(count)


class WatermarkUpkeep:
    """The writer's upkeep step (``BatchWriter.after_commit``): one batch of ``script``
    once ``min_rows`` rows were written since the last one, or whenever the writer is
    idle."""

    def __init__(
        self, engine: AsyncEngine, rows_written: Callable[[], int], script: Batch, *, batch_rows: int, min_rows: int
    ) -> None:
        self.engine = engine
        self.rows_written = rows_written  # rows of every kind: a cheap "enough new work" signal
        self.script = script
        self.batch_rows = batch_rows
        self.min_rows = min_rows
        self._seen = -min_rows  # the first step handles what an earlier run left

    async def step(self, busy: bool) -> bool:
        written = self.rows_written()
        if busy and written - self._seen < self.min_rows:
            return False
        self._seen = written
        return await run_background(self.engine, self.script, self.batch_rows) >= self.batch_rows
