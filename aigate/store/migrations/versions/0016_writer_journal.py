"""writer journal: how far each local journal file has been replayed

Revision ID: 0016
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writer_journal",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("replayed_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_writer_journal")),
    )


def downgrade() -> None:
    op.drop_table("writer_journal")
