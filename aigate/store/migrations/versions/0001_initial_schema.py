"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 16:07:42.439308
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_requests",
        sa.Column("request_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("from_appserver", sa.Boolean(), nullable=False),
        sa.Column("module", sa.String(length=20), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("platform_id", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("unit_price", sa.JSON(), nullable=True),
        sa.Column("custom_response", sa.JSON(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("job", sa.JSON(), nullable=True),
        sa.Column("next_poll_ms", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claim_until_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_ai_requests")),
    )
    with op.batch_alter_table("ai_requests", schema=None) as batch_op:
        batch_op.create_index("ix_ai_requests_poll", ["status", "next_poll_ms"], unique=False)
        batch_op.create_index("ix_ai_requests_user_time", ["app_id", "user_id", "created_ms"], unique=False)

    op.create_table(
        "apps",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("user_token_secret", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apps")),
    )
    op.create_table(
        "asset_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=100), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.String(length=24), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_ledger")),
        sa.UniqueConstraint(
            "app_id",
            "user_id",
            "asset",
            "idempotency_key",
            name=op.f("uq_asset_ledger_app_id_user_id_asset_idempotency_key"),
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("asset_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_asset_ledger_user", ["app_id", "user_id", "id"], unique=False)

    op.create_table(
        "asset_policies",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "name", name=op.f("pk_asset_policies")),
    )
    op.create_table(
        "chat_exchanges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.String(length=18), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=24), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_exchanges")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("chat_exchanges", schema=None) as batch_op:
        batch_op.create_index("ix_chat_exchanges_chat", ["chat_id", "id"], unique=False)

    op.create_table(
        "chats",
        sa.Column("chat_id", sa.String(length=18), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_chats")),
    )
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.create_index("ix_chats_user", ["app_id", "user_id", "updated_ms"], unique=False)

    op.create_table(
        "config_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_version")),
    )
    op.create_table(
        "instructions",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "name", name=op.f("pk_instructions")),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price", sa.JSON(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_models")),
    )
    op.create_table(
        "platforms",
        sa.Column("number", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_platforms")),
        sa.UniqueConstraint("id", name=op.f("uq_platforms_id")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "relay_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("spend_limit", sa.Numeric(precision=24, scale=12), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_tokens")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_relay_tokens_app_id_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_relay_tokens_key_hash")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("relay_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relay_tokens_app_id"), ["app_id"], unique=False)

    op.create_table(
        "request_details",
        sa.Column("log_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("request_body", sa.Text(), nullable=False),
        sa.Column("request_body_truncated", sa.Boolean(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column("response_body_truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_request_details")),
    )
    op.create_table(
        "server_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_keys")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_server_keys_app_id_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_server_keys_key_hash")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("server_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_server_keys_app_id"), ["app_id"], unique=False)

    op.create_table(
        "strategies",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("module", sa.String(length=20), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "name", name=op.f("pk_strategies")),
    )
    op.create_table(
        "usage_counters",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", "strategy", name=op.f("pk_usage_counters")),
    )
    op.create_table(
        "usage_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=24), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("request_ms", sa.BigInteger(), nullable=False),
        sa.Column("retry_ms", sa.BigInteger(), nullable=True),
        sa.Column("retry_times", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.BigInteger(), nullable=False),
        sa.Column("token_name", sa.String(length=100), nullable=False),
        sa.Column("ttfb_ms", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_tokens", sa.BigInteger(), nullable=False),
        sa.Column("image_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("web_search_count", sa.Integer(), nullable=False),
        sa.Column("usage_estimated", sa.Boolean(), nullable=False),
        sa.Column("price", sa.JSON(), nullable=False),
        sa.Column("used_amount", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_logs")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("usage_logs", schema=None) as batch_op:
        batch_op.create_index("ix_usage_logs_app_created", ["app_id", "created_ms", "id"], unique=False)
        batch_op.create_index("ix_usage_logs_created", ["created_ms", "id"], unique=False)
        batch_op.create_index("ix_usage_logs_model_created", ["model", "created_ms"], unique=False)
        batch_op.create_index("ix_usage_logs_request_id", ["request_id"], unique=False)
        batch_op.create_index("ix_usage_logs_user_created", ["user", "created_ms"], unique=False)

    op.create_table(
        "usage_rollups",
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_amount", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("ttfb_ms_sum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_ms", "app_id", "model", "strategy", name=op.f("pk_usage_rollups")),
    )
    op.create_table(
        "user_assets",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("last_recovery_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", "name", name=op.f("pk_user_assets")),
    )
    op.create_table(
        "users",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", name=op.f("pk_users")),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("user_assets")
    op.drop_table("usage_rollups")
    with op.batch_alter_table("usage_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_logs_user_created")
        batch_op.drop_index("ix_usage_logs_request_id")
        batch_op.drop_index("ix_usage_logs_model_created")
        batch_op.drop_index("ix_usage_logs_created")
        batch_op.drop_index("ix_usage_logs_app_created")

    op.drop_table("usage_logs")
    op.drop_table("usage_counters")
    op.drop_table("strategies")
    with op.batch_alter_table("server_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_keys_app_id"))

    op.drop_table("server_keys")
    op.drop_table("request_details")
    with op.batch_alter_table("relay_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_tokens_app_id"))

    op.drop_table("relay_tokens")
    op.drop_table("platforms")
    op.drop_table("models")
    op.drop_table("instructions")
    op.drop_table("config_version")
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.drop_index("ix_chats_user")

    op.drop_table("chats")
    with op.batch_alter_table("chat_exchanges", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_exchanges_chat")

    op.drop_table("chat_exchanges")
    op.drop_table("asset_policies")
    with op.batch_alter_table("asset_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_ledger_user")

    op.drop_table("asset_ledger")
    op.drop_table("apps")
    with op.batch_alter_table("ai_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_ai_requests_user_time")
        batch_op.drop_index("ix_ai_requests_poll")

    op.drop_table("ai_requests")
