"""SQLite rollups off the flush: the writer adds new log rows to the rollups in batches

Before, every writer flush added its rows to the rollups (dashboard series, log counts,
per-user daily totals) inside its own transaction. On SQLite
``usage_rollups_state.rolled_through`` now records the highest log id in the rollups;
the writer adds the rows above it in batches after its commits, and readers of the
rollups add what is left first (``aigate.store.sinks``). Ids never go back
(``usage_logs`` is AUTOINCREMENT), so every row above the watermark is new.

Nothing changes on PostgreSQL.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

STATE = "usage_rollups_state"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE TABLE {STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), rolled_through INTEGER NOT NULL)")
    # every row logged so far is in the rollups (its flush added it)
    op.execute(f"INSERT INTO {STATE} (id, rolled_through) SELECT 1, coalesce(max(id), 0) FROM usage_logs")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # rows above the watermark stay out of the rollups: run the gateway once before
    # downgrading (its readers and its writer add them)
    op.execute(f"DROP TABLE {STATE}")
