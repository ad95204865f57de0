"""SQLite keyword index: FTS5's automatic merging off; the indexer merges in bounded steps

FTS5 merges the index's segments on its own (``automerge``, 4 by default) inside the
statements and the commit that add rows: a batch of 64 rows took 0.6 ms at p50 but 19 ms
at p99 on the writer's connection, which requests' scripts share. With ``automerge`` at
0 the indexer (``aigate.store.log_index``) merges after each batch instead, a few pages
at a time, and stops when a request's script waits. ``crisismerge`` stays: a level that
reaches 16 segments is still merged at once.

Nothing changes on PostgreSQL.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

FTS = "usage_logs_fts"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"INSERT INTO {FTS} ({FTS}, rank) VALUES ('automerge', 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"INSERT INTO {FTS} ({FTS}, rank) VALUES ('automerge', 4)")
