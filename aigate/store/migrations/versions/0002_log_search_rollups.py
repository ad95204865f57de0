"""log search and dashboard: hourly rollups, log counts, search indexes

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
ERRORS = "code <> 200"
SUMS = "requests, errors, input_tokens, output_tokens, total_tokens, used_amount, ttfb_ms_sum"


def upgrade() -> None:
    op.create_table(
        "usage_rollups_hourly",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.String(length=16), nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_amount", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("ttfb_ms_sum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "dim", "bucket_ms", "value", name=op.f("pk_usage_rollups_hourly")),
    )
    op.create_table(
        "usage_log_counts",
        sa.Column("grain_ms", sa.Integer(), nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("token_name", sa.String(length=100), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("logs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain_ms",
            "bucket_ms",
            "app_id",
            "model",
            "channel",
            "token_name",
            "code",
            name=op.f("pk_usage_log_counts"),
        ),
    )
    op.create_index("ix_usage_logs_app_model_created", "usage_logs", ["app_id", "model", "created_ms", "id"])
    op.create_index("ix_usage_logs_app_token_created", "usage_logs", ["app_id", "token_name", "created_ms", "id"])
    op.create_index("ix_usage_logs_channel_created", "usage_logs", ["channel", "created_ms", "id"])
    op.create_index(
        "ix_usage_logs_errors_created",
        "usage_logs",
        ["created_ms", "id"],
        postgresql_where=sa.text(ERRORS),
        sqlite_where=sa.text(ERRORS),
    )
    op.create_index(
        "ix_usage_logs_app_errors_created",
        "usage_logs",
        ["app_id", "created_ms", "id"],
        postgresql_where=sa.text(ERRORS),
        sqlite_where=sa.text(ERRORS),
    )

    # Existing rows: the new tables start consistent with what is already logged.
    hour = f"bucket_ms / {HOUR_MS} * {HOUR_MS}"
    for app, dim, value in (
        ("app_id", "'total'", "''"),
        ("app_id", "'model'", "model"),
        ("app_id", "'strategy'", "strategy"),
        ("'*'", "'total'", "''"),
        ("'*'", "'model'", "model"),
        ("'*'", "'strategy'", "strategy"),
    ):
        keys = ", ".join(k for k in (app, value) if not k.startswith("'"))
        op.execute(
            f"INSERT INTO usage_rollups_hourly (app_id, dim, bucket_ms, value, {SUMS}) "
            f"SELECT {app}, {dim}, {hour}, {value}, sum(requests), sum(errors), sum(input_tokens), "
            "sum(output_tokens), sum(total_tokens), sum(used_amount), sum(ttfb_ms_sum) "
            f"FROM usage_rollups GROUP BY {hour}{', ' + keys if keys else ''}"
        )
    for grain in (HOUR_MS, DAY_MS):
        op.execute(
            "INSERT INTO usage_log_counts "
            "(grain_ms, bucket_ms, app_id, model, channel, token_name, code, logs) "
            f"SELECT {grain}, created_ms / {grain} * {grain}, app_id, model, channel, token_name, "
            "code, count(*) FROM usage_logs "
            f"GROUP BY created_ms / {grain} * {grain}, app_id, model, channel, token_name, code"
        )


def downgrade() -> None:
    for name in (
        "ix_usage_logs_app_errors_created",
        "ix_usage_logs_errors_created",
        "ix_usage_logs_channel_created",
        "ix_usage_logs_app_token_created",
        "ix_usage_logs_app_model_created",
    ):
        op.drop_index(name, table_name="usage_logs")
    op.drop_table("usage_log_counts")
    op.drop_table("usage_rollups_hourly")
