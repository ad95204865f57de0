"""SQLite's keyword index, kept in batches by the writer instead of by an insert trigger.

Tokenising a log row into the FTS5 trigram table ``usage_logs_fts`` costs more CPU than
the insert itself: ~40 µs a row through an insert trigger, inside every writer flush on
the one connection every request's credit reservation also waits for, against 10-17 µs
a row in batches of hundreds. Instead
``usage_logs_fts_state.indexed_through`` (migration 0017) holds the highest log id in the
index, and after its commits the writer indexes the rows above it, ``BATCH_ROWS`` at a
time, each batch one ``INSERT … SELECT`` and the watermark moved in the same transaction
(so a crash never indexes a row twice or skips one). The keyword search reads the index
up to the watermark and scans the few rows above it (``aigate.store.logs_query``), so a
row is found from the moment it is written.

Deletes and updates of indexed rows keep the index exact through the table's triggers;
rows above the watermark are not in the index and are indexed with their current values.
Nothing here runs on PostgreSQL, whose trigram indexes are maintained by the server.
"""

from __future__ import annotations

from aigate.store import tables as t
from aigate.store.upkeep import next_log_rows

FTS = t.SQLITE_FTS_TABLE
STATE = t.SQLITE_FTS_STATE_TABLE
BATCH_ROWS = 512  # one batch: a few milliseconds on the writer's connection
# While the writer is busy, index once this many rows were written: FTS5 costs about
# half as much per row in batches of hundreds as in batches of tens (fewer segments).
MIN_BATCH_ROWS = 256
_COLS = ", ".join(f'"{c}"' for c in t.KEYWORD_COLUMNS)


def index_new_rows(db, limit: int = BATCH_ROWS) -> int:
    """Index up to ``limit`` log rows above the watermark (a transaction script); returns
    how many it indexed, so ``limit`` means more may be waiting."""
    span, count = next_log_rows(db, f"{STATE}.indexed_through", limit)
    if not count:
        return 0
    db.rows(
        f"INSERT INTO {FTS} (rowid, {_COLS}) SELECT id, {_COLS} FROM usage_logs WHERE id > :done AND id <= :upto", span
    )
    db.rows(f"UPDATE {STATE} SET indexed_through = :upto", span)
    return count


def pending_rows(db) -> int:
    """How many log rows the index does not hold yet."""
    [(n,)] = db.rows(f"SELECT count(*) FROM usage_logs WHERE id > (SELECT indexed_through FROM {STATE})")
    return int(n)
