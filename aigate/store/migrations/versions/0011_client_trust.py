"""clients in the wild: per-app client settings, token revocations, 128-character user ids

Revision ID: 0011
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0014"
branch_labels = None
depends_on = None

# Every column that holds an end-user id (SPEC §2: 1-128 characters).
USER_COLUMNS = [
    ("users", "user_id"),
    ("user_assets", "user_id"),
    ("asset_ledger", "user_id"),
    ("usage_counters", "user_id"),
    ("chats", "user_id"),
    ("chat_exchanges", "user_id"),
    ("ai_requests", "user_id"),
    ("usage_logs", "user"),
]


def _resize(length_from: int, length_to: int) -> None:
    for table, column in USER_COLUMNS:
        # SQLite does not enforce VARCHAR lengths; batch mode rebuilds the table there.
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                type_=sa.String(length=length_to),
                existing_type=sa.String(length=length_from),
                existing_nullable=False,
            )


def upgrade() -> None:
    op.add_column("apps", sa.Column("client_trust", sa.JSON(), nullable=True))
    op.create_table(
        "token_revocations",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", name=op.f("pk_token_revocations")),
    )
    op.create_index(op.f("ix_token_revocations_revoked"), "token_revocations", ["revoked_ms"])
    _resize(64, 128)


def downgrade() -> None:
    _resize(128, 64)
    op.drop_index(op.f("ix_token_revocations_revoked"), table_name="token_revocations")
    op.drop_table("token_revocations")
    op.drop_column("apps", "client_trust")
