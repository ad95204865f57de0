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

FTS5's own merging of the index's segments is off (migration 0019: it ran inside the
statements that add rows, up to 19 ms for a batch of 64). After each batch the indexer
merges ``MERGE_PAGES`` pages at a time, up to ``MERGE_STEPS`` times, and stops early when
a request's script waits for the connection; what is left continues at the next batch.

Deletes and updates of indexed rows keep the index exact through the table's triggers;
rows above the watermark are not in the index and are indexed with their current values.
Nothing here runs on PostgreSQL, whose trigram indexes are maintained by the server.
"""

from __future__ import annotations

from aigate.store import tables as t
from aigate.store.upkeep import Handled, in_parts

FTS = t.SQLITE_FTS_TABLE
STATE = t.SQLITE_FTS_STATE_TABLE
BATCH_ROWS = 512  # one batch: a few milliseconds on the writer's connection
# While the writer is busy, index once this many rows were written: FTS5 costs about
# half as much per row in batches of hundreds as in batches of tens (fewer segments).
MIN_BATCH_ROWS = 256
_COLS = ", ".join(f'"{c}"' for c in t.KEYWORD_COLUMNS)
_INDEX_SQL = f"INSERT INTO {FTS} (rowid, {_COLS}) SELECT id, {_COLS} FROM usage_logs WHERE id > :done AND id <= :upto"
# One merge step: about 0.6 ms at p50 (2 ms at p99); fewer pages cost about as much.
MERGE_PAGES = 16
MERGE_STEPS = 4  # per batch: merging keeps up with about one step a batch
_MERGE_SQL = f"INSERT INTO {FTS} ({FTS}, rank) VALUES ('merge', {MERGE_PAGES})"


def index_new_rows(db, limit: int = BATCH_ROWS) -> Handled:
    """Index up to ``limit`` log rows above the watermark (a transaction script), then
    merge the index's segments a few steps. A waiting request's script stops the merging,
    not the indexing: every batch cut short would leave one more small segment to merge."""
    indexed = in_parts(
        db, f"{STATE}.indexed_through", limit, lambda db, span: db.rows(_INDEX_SQL, span), stop_for_requests=False
    )
    return Handled(indexed.rows, _merge(db, after_new_rows=indexed.rows > 0) or indexed.more)


def _merge(db, *, after_new_rows: bool) -> bool:
    """Up to ``MERGE_STEPS`` steps of merging; True when more may be waiting (the steps
    ran out, or a request's script waits). A step that changes fewer than two rows found
    nothing to merge (FTS5's documented test), except the first one after new rows: it
    writes their segment first and then counts as one change whatever it merged."""
    for step in range(MERGE_STEPS):
        [(before,)] = db.rows("SELECT total_changes()")
        db.rows(_MERGE_SQL)
        [(after,)] = db.rows("SELECT total_changes()")
        if after - before < 2 and not (step == 0 and after_new_rows):
            return False
        if db.yield_point():
            return True
    return True


def pending_rows(db) -> int:
    """How many log rows the index does not hold yet."""
    [(n,)] = db.rows(f"SELECT count(*) FROM usage_logs WHERE id > (SELECT indexed_through FROM {STATE})")
    return int(n)
