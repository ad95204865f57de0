"""web console: operators, console sessions, audit log, per-user daily usage

Revision ID: 0010
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0011"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(precision=24, scale=12)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("auth_version", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_operators")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("seen_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index("ix_console_sessions_operator", "console_sessions", ["operator"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("object", sa.String(length=500), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_created_ms", "audit_log", ["created_ms"])
    op.create_table(
        "user_usage_daily",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("day_ms", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_amount", Money, nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", "day_ms", name=op.f("pk_user_usage_daily")),
    )
    op.add_column("asset_ledger", sa.Column("note", sa.String(length=200), nullable=True))
    # Existing rows: the per-user totals start consistent with what is already logged.
    day = f"created_ms / {DAY_MS} * {DAY_MS}"
    op.execute(
        "INSERT INTO user_usage_daily (app_id, user_id, day_ms, requests, errors, input_tokens, "
        "output_tokens, total_tokens, used_amount) "
        f'SELECT app_id, "user", {day}, count(*), sum(CASE WHEN code <> 200 THEN 1 ELSE 0 END), '
        "sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(used_amount) "
        f'FROM usage_logs GROUP BY app_id, "user", {day}'
    )


def downgrade() -> None:
    op.drop_table("user_usage_daily")
    with op.batch_alter_table("asset_ledger") as batch:
        batch.drop_column("note")
    op.drop_index("ix_audit_log_created_ms", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_console_sessions_operator", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("operators")
