"""log search at scale: keyword indexes, covering ordering indexes, daily dashboard sums

* keyword: pg_trgm GIN indexes on PostgreSQL (the extension is created in ``public``
  when it is missing, and its operator class is named with the schema it lives in, so
  every schema of the database can use it); an FTS5 trigram table kept by triggers on
  SQLite;
* the log search's ordering indexes carry ``id``, ``code`` and the other filter columns,
  so deep pages and filtered pages are index-only walks;
* ``usage_rollups_daily``: the hourly dashboard series summed per UTC day.

On SQLite a migration that rebuilds ``usage_logs`` (Alembic's batch mode) drops the FTS
triggers, so this one runs after those that do (0011 widens the user columns).

Revision ID: 0012
Revises: 0010
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000
ERRORS = "code <> 200"
SUMS = "requests, errors, input_tokens, output_tokens, total_tokens, used_amount, ttfb_ms_sum"
KEYWORD_COLUMNS = ("request_id", "user", "model", "token_name", "content")
FTS = "usage_logs_fts"

# name -> (columns, partial on errors)
OLD_INDEXES = {
    "ix_usage_logs_created": (["created_ms", "id"], False),
    "ix_usage_logs_app_created": (["app_id", "created_ms", "id"], False),
    "ix_usage_logs_model_created": (["model", "created_ms"], False),
    "ix_usage_logs_user_created": (["user", "created_ms"], False),
    "ix_usage_logs_app_model_created": (["app_id", "model", "created_ms", "id"], False),
    "ix_usage_logs_app_token_created": (["app_id", "token_name", "created_ms", "id"], False),
    "ix_usage_logs_channel_created": (["channel", "created_ms", "id"], False),
    "ix_usage_logs_errors_created": (["created_ms", "id"], True),
    "ix_usage_logs_app_errors_created": (["app_id", "created_ms", "id"], True),
}
_ORDER = ["created_ms", "id"]
_FILTERS = ["code", "app_id", "model", "token_name", "channel"]


def _covering(leading: list[str]) -> list[str]:
    return leading + _ORDER + [c for c in _FILTERS if c not in leading]


NEW_INDEXES = {
    "ix_usage_logs_created": (_covering([]), False),
    "ix_usage_logs_app_created": (_covering(["app_id"]), False),
    "ix_usage_logs_model_created": (_covering(["model"]), False),
    "ix_usage_logs_user_created": (["user", "created_ms", "id"], False),
    "ix_usage_logs_app_model_created": (_covering(["app_id", "model"]), False),
    "ix_usage_logs_app_token_created": (_covering(["app_id", "token_name"]), False),
    "ix_usage_logs_channel_created": (_covering(["channel"]), False),
    "ix_usage_logs_errors_created": (_covering([]), True),
    "ix_usage_logs_app_errors_created": (_covering(["app_id"]), True),
}


def _replace_indexes(indexes: dict) -> None:
    for name, (columns, errors_only) in indexes.items():
        op.drop_index(name, table_name="usage_logs")
        where: dict[str, Any] = (
            {"postgresql_where": sa.text(ERRORS), "sqlite_where": sa.text(ERRORS)} if errors_only else {}
        )
        op.create_index(name, "usage_logs", columns, **where)


def _pg_trgm_schema() -> str:
    bind = op.get_bind()
    has_public = bind.exec_driver_sql("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").scalar()
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm" + (" SCHEMA public" if has_public else ""))
    return bind.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    ).scalar_one()


def _sqlite_fts() -> None:
    cols = ", ".join(f'"{c}"' for c in KEYWORD_COLUMNS)
    new = ", ".join(f'new."{c}"' for c in KEYWORD_COLUMNS)
    old = ", ".join(f'old."{c}"' for c in KEYWORD_COLUMNS)
    op.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5({cols}, content='usage_logs', content_rowid='id', tokenize='trigram')"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON usage_logs BEGIN "
        f"INSERT INTO {FTS} (rowid, {cols}) VALUES (new.id, {new}); END"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON usage_logs BEGIN "
        f"INSERT INTO {FTS} ({FTS}, rowid, {cols}) VALUES ('delete', old.id, {old}); END"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_update AFTER UPDATE OF {cols} ON usage_logs BEGIN "
        f"INSERT INTO {FTS} ({FTS}, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO {FTS} (rowid, {cols}) VALUES (new.id, {new}); END"
    )
    op.execute(f"INSERT INTO {FTS} ({FTS}) VALUES ('rebuild')")  # the rows already logged


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("SET LOCAL maintenance_work_mem = '256MB'")  # index builds on a big log
    _replace_indexes(NEW_INDEXES)
    if dialect == "postgresql":
        schema = _pg_trgm_schema()
        for col in KEYWORD_COLUMNS:
            op.execute(
                f'CREATE INDEX ix_usage_logs_trgm_{col} ON usage_logs USING gin ("{col}" "{schema}".gin_trgm_ops)'
            )
    else:
        _sqlite_fts()

    op.create_table(
        "usage_rollups_daily",
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
        sa.PrimaryKeyConstraint("app_id", "dim", "bucket_ms", "value", name=op.f("pk_usage_rollups_daily")),
    )
    day = f"bucket_ms / {DAY_MS} * {DAY_MS}"
    op.execute(
        f"INSERT INTO usage_rollups_daily (app_id, dim, bucket_ms, value, {SUMS}) "
        f"SELECT app_id, dim, {day}, value, sum(requests), sum(errors), sum(input_tokens), "
        "sum(output_tokens), sum(total_tokens), sum(used_amount), sum(ttfb_ms_sum) "
        f"FROM usage_rollups_hourly GROUP BY app_id, dim, {day}, value"
    )


def downgrade() -> None:
    op.drop_table("usage_rollups_daily")
    if op.get_bind().dialect.name == "postgresql":
        for col in KEYWORD_COLUMNS:
            op.drop_index(f"ix_usage_logs_trgm_{col}", table_name="usage_logs")
        # pg_trgm stays: other schemas of the database may use it
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER {FTS}_{trigger}")
        op.execute(f"DROP TABLE {FTS}")
    _replace_indexes(OLD_INDEXES)
