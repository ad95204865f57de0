"""Deferred work over the log rows above a watermark, done between the writer's batches.

On SQLite some work on new usage-log rows (the keyword index, the rollups) is kept out of
the writer's flush, whose transaction every request's script waits behind, and done in
batches after the writer's commits instead: a transaction script moves a watermark over
the rows it handled in the same transaction, so a crash never handles a row twice or
skips one.

A batch of the rollups is handled in parts of ``PART_ROWS`` rows in its one transaction.
Between parts it asks ``db.yield_point()`` whether a request's script waits for the
connection (on SQLite requests' scripts share it with this work); if one does, it moves
the watermark over the parts done and commits, so a request waits for one part (a
fraction of a millisecond), not a whole batch. The rest follows at the writer's next step.
Only while the rows not yet handled exceed ``CATCH_UP_ROWS`` does a batch run to its end
regardless: work cut short under a steady stream of requests must still keep up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store.script import run_background

# Rows per part of a batch that may stop for requests: about 0.15 ms of the rollups.
PART_ROWS = 32
# Rows behind the log beyond which a batch is not cut short for requests.
CATCH_UP_ROWS = 2048


class Handled(NamedTuple):
    rows: int  # log rows handled
    more: bool  # more may be waiting: the batch reached its limit, or was cut short


# A transaction script: handles up to ``limit`` rows above its watermark.
Batch = Callable[..., Handled]
# Handles the log rows of an id span ``{"done", "upto"}`` (``done < id <= upto``).
Part = Callable[..., None]
_NEXT_IDS_SQL = "SELECT max(id), count(*) FROM (SELECT id FROM usage_logs WHERE id > :done ORDER BY id LIMIT :limit)"
_LAST_ID_SQL = "SELECT max(id) FROM usage_logs"


def in_parts(db, watermark: str, limit: int, part: Part, *, stop_for_requests: bool = True) -> Handled:
    """Hand ``part`` the log rows above ``watermark`` (``"table.column"``, a one-row
    table), up to ``limit`` rows; with ``stop_for_requests``, ``PART_ROWS`` at a time
    until a request's script waits for the connection. Then move the watermark over what
    was handled."""
    table, column = watermark.split(".")
    [(done,)] = db.rows(f"SELECT {column} FROM {table}")
    may_stop = False
    if stop_for_requests:
        [(last,)] = db.rows(_LAST_ID_SQL)
        may_stop = (last or 0) - done <= CATCH_UP_ROWS  # ids deleted below `last` count too: an upper bound
    step = PART_ROWS if may_stop else limit  # parts only where they can stop
    handled = 0
    more = False
    while handled < limit:
        size = min(step, limit - handled)
        [(upto, count)] = db.rows(_NEXT_IDS_SQL, {"done": done, "limit": size})
        if not count:
            break
        part(db, {"done": done, "upto": upto})
        done, handled = upto, handled + count
        if count < size:
            break  # the last rows there are
        if handled == limit or (may_stop and db.yield_point()):
            more = True
            break
    if handled:
        db.rows(f"UPDATE {table} SET {column} = :upto", {"upto": done})
    return Handled(handled, more)


class WatermarkUpkeep:
    """The writer's upkeep step (``BatchWriter.after_commit``): one batch of ``script``
    once ``min_rows`` rows were written since the last one, after a batch that left more
    waiting, or whenever the writer is idle."""

    def __init__(
        self, engine: AsyncEngine, rows_written: Callable[[], int], script: Batch, *, batch_rows: int, min_rows: int
    ) -> None:
        self.engine = engine
        self.rows_written = rows_written  # rows of every kind: a cheap "enough new work" signal
        self.script = script
        self.batch_rows = batch_rows
        self.min_rows = min_rows
        self._seen = 0
        self._more = True  # the first step handles what an earlier run left

    async def step(self, busy: bool) -> bool:
        written = self.rows_written()
        if busy and not self._more and written - self._seen < self.min_rows:
            return False
        self._seen = written
        self._more = (await run_background(self.engine, self.script, self.batch_rows)).more
        return self._more
