"""SQLite keyword index off the insert path: the writer indexes new log rows in batches

Before, an insert trigger tokenised every usage-log row into ``usage_logs_fts`` inside the
writer's flush. Now ``usage_logs_fts_state.indexed_through`` records the highest log id
in the index; the writer indexes the rows above it in batches after its commits
(``aigate.store.log_index``) and the keyword search scans the rows above it directly.
The delete and update triggers stay, limited to rows already indexed (an FTS5 'delete'
of a row that is not in the index would corrupt it). Ids never go back
(``usage_logs`` is AUTOINCREMENT), so every row above the watermark is new.

Nothing changes on PostgreSQL.

Revision ID: 0017
Revises: 0012
"""

from alembic import op

revision = "0017"
down_revision = "0012"
branch_labels = None
depends_on = None

KEYWORD_COLUMNS = ("request_id", "user", "model", "token_name", "content")
FTS = "usage_logs_fts"
STATE = "usage_logs_fts_state"
COLS = ", ".join(f'"{c}"' for c in KEYWORD_COLUMNS)
NEW = ", ".join(f'new."{c}"' for c in KEYWORD_COLUMNS)
OLD = ", ".join(f'old."{c}"' for c in KEYWORD_COLUMNS)
DELETE_OLD = f"INSERT INTO {FTS} ({FTS}, rowid, {COLS}) VALUES ('delete', old.id, {OLD});"
INSERT_NEW = f"INSERT INTO {FTS} (rowid, {COLS}) VALUES (new.id, {NEW});"
INDEXED = f"old.id <= (SELECT indexed_through FROM {STATE})"


def _triggers(indexed_only: bool) -> None:
    when = f" WHEN {INDEXED}" if indexed_only else ""
    op.execute(f"DROP TRIGGER IF EXISTS {FTS}_delete")
    op.execute(f"DROP TRIGGER IF EXISTS {FTS}_update")
    op.execute(f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON usage_logs{when} BEGIN {DELETE_OLD} END")
    op.execute(
        f"CREATE TRIGGER {FTS}_update AFTER UPDATE OF {COLS} ON usage_logs{when} BEGIN {DELETE_OLD} {INSERT_NEW} END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE TABLE {STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_through INTEGER NOT NULL)")
    # every row logged so far is in the index (the insert trigger put it there)
    op.execute(f"INSERT INTO {STATE} (id, indexed_through) SELECT 1, coalesce(max(id), 0) FROM usage_logs")
    op.execute(f"DROP TRIGGER IF EXISTS {FTS}_insert")
    _triggers(indexed_only=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # index what the writer had not indexed yet, then go back to the insert trigger
    op.execute(
        f"INSERT INTO {FTS} (rowid, {COLS}) SELECT id, {COLS} FROM usage_logs "
        f"WHERE id > (SELECT indexed_through FROM {STATE})"
    )
    _triggers(indexed_only=False)
    op.execute(f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON usage_logs BEGIN {INSERT_NEW} END")
    op.execute(f"DROP TABLE {STATE}")
