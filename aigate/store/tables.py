"""Every table aigate keeps, as SQLAlchemy Core.

Conventions: times are integer milliseconds since the Unix epoch (UTC) in ``*_ms``
columns, which compare and index the same way on SQLite and PostgreSQL; JSON documents
use the portable ``JSON`` type; secrets a client presents (server keys, relay tokens)
are stored as SHA-256 hex digests, never in the clear.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Monetary amounts: exact decimals (PostgreSQL NUMERIC; SQLite keeps them as numbers).
Money = Numeric(24, 12, asdecimal=True)
# Auto-incrementing 64-bit keys that SQLite also auto-increments (INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")

# --- configuration (the YAML file and the Admin API write these; every instance caches them)

config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("user_token_secret", Text, nullable=False),  # HMAC key: must be usable, so not hashed
    Column("enabled", Boolean, nullable=False, default=True),
    Column("settings", JSON, nullable=False, default=dict),
    Column("updated_ms", BigInteger, nullable=False),
)

server_keys = Table(
    "server_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("app_id", "name"),
    sqlite_autoincrement=True,
)

relay_tokens = Table(
    "relay_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),  # the log's token_id
    Column("app_id", String(64), nullable=False, index=True),
    Column("name", String(100), nullable=False),  # the log's token_name
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("models", JSON, nullable=False, default=list),  # empty: every model
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("spend_limit", Money, nullable=True),
    Column("expires_ms", BigInteger, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("app_id", "name"),
    sqlite_autoincrement=True,
)

platforms = Table(
    "platforms",
    metadata,
    Column("number", BigId, primary_key=True, autoincrement=True),  # the log's channel
    Column("id", String(100), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("spec", JSON, nullable=False),  # the validated platform definition
    Column("enabled", Boolean, nullable=False, default=True),
    Column("updated_ms", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("price", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

strategies = Table(
    "strategies",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("module", String(20), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("updated_ms", BigInteger, nullable=False),
)

instructions = Table(
    "instructions",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

asset_policies = Table(
    "asset_policies",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# --- end users and their balances

users = Table(
    "users",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
)

user_assets = Table(
    "user_assets",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("last_recovery_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

asset_ledger = Table(
    "asset_ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("asset", String(100), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("reason", String(20), nullable=False),  # initial|reserve|refund|grant|recovery|adjust
    Column("request_id", String(24), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("note", String(200), nullable=True),  # an operator's reason for an adjustment
    # NULL keys never collide, so only grants (which carry a key) are deduplicated
    UniqueConstraint("app_id", "user_id", "asset", "idempotency_key"),
    Index("ix_asset_ledger_user", "app_id", "user_id", "id"),
    sqlite_autoincrement=True,
)

usage_counters = Table(
    "usage_counters",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("strategy", String(100), primary_key=True),  # or "instruction:<name>"
    Column("period", String(32), nullable=False),  # the limit period counted, e.g. "day:20261122"
    Column("count", BigInteger, nullable=False),  # calls in that period
    Column("total", BigInteger, nullable=False),  # calls ever
)

# --- chat history

chats = Table(
    "chats",
    metadata,
    Column("chat_id", String(18), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("title", String(100), nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_chats_user", "app_id", "user_id", "updated_ms"),
)

chat_exchanges = Table(
    "chat_exchanges",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("chat_id", String(18), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("messages", JSON, nullable=False),  # the user turn(s) and the assistant reply
    Column("tokens", Integer, nullable=False, default=0),
    Column("request_id", String(24), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_chat_exchanges_chat", "chat_id", "id"),
    sqlite_autoincrement=True,
)

# --- AI request records (the end user's view) and async jobs

ai_requests = Table(
    "ai_requests",
    metadata,
    Column("request_id", BigInteger, primary_key=True, autoincrement=False),  # snowflake
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("from_appserver", Boolean, nullable=False),
    Column("module", String(20), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("platform", String(32), nullable=False, default=""),  # platform type
    Column("platform_id", String(24), nullable=False, default=""),  # the usage log's request_id
    Column("status", String(12), nullable=False),
    Column("response", Text, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("unit_price", JSON, nullable=True),
    Column("custom_response", JSON, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # async job state: which platform runs it, the upstream job id, the reserved cost
    Column("job", JSON, nullable=True),
    Column("next_poll_ms", BigInteger, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_until_ms", BigInteger, nullable=True),
    Index("ix_ai_requests_user_time", "app_id", "user_id", "created_ms"),
    Index("ix_ai_requests_poll", "status", "next_poll_ms"),
)

# --- the operator's usage log (seed 001)

usage_logs = Table(
    "usage_logs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(24), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("request_ms", BigInteger, nullable=False),
    Column("retry_ms", BigInteger, nullable=True),
    Column("retry_times", Integer, nullable=False, default=0),
    Column("code", Integer, nullable=False),
    Column("content", Text, nullable=False, default=""),
    Column("endpoint", String(200), nullable=False, default=""),
    Column("app_id", String(64), nullable=False, default=""),  # the log's group
    Column("channel", Integer, nullable=False, default=0),
    Column("mode", Integer, nullable=False, default=0),
    Column("model", String(200), nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
    Column("user", String(64), nullable=False, default=""),
    Column("token_id", BigInteger, nullable=False, default=0),
    Column("token_name", String(100), nullable=False, default=""),
    Column("ttfb_ms", Integer, nullable=False, default=0),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_tokens", BigInteger, nullable=False, default=0),
    Column("image_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("total_tokens", BigInteger, nullable=False, default=0),
    Column("web_search_count", Integer, nullable=False, default=0),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    Column("price", JSON, nullable=False, default=dict),
    Column("used_amount", Money, nullable=False, default=0),
    Index("ix_usage_logs_created", "created_ms", "id"),
    Index("ix_usage_logs_app_created", "app_id", "created_ms", "id"),
    Index("ix_usage_logs_model_created", "model", "created_ms"),
    Index("ix_usage_logs_request_id", "request_id"),
    Index("ix_usage_logs_user_created", "user", "created_ms"),
    sqlite_autoincrement=True,
)

request_details = Table(
    "request_details",
    metadata,
    Column("log_id", BigInteger, primary_key=True, autoincrement=False),
    Column("request_body", Text, nullable=False, default=""),
    Column("request_body_truncated", Boolean, nullable=False, default=False),
    Column("response_body", Text, nullable=False, default=""),
    Column("response_body_truncated", Boolean, nullable=False, default=False),
)

def _rollup_sums() -> list[Column]:
    """The sums every dashboard rollup keeps (the writer adds to them)."""
    counts = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens")
    return [Column(name, BigInteger, nullable=False, default=0) for name in counts] + [
        Column("used_amount", Money, nullable=False, default=0),
        Column("ttfb_ms_sum", BigInteger, nullable=False, default=0),
    ]


# Per-minute sums the writer maintains so the dashboard never scans the log.
usage_rollups = Table(
    "usage_rollups",
    metadata,
    Column("bucket_ms", BigInteger, primary_key=True),  # start of the minute
    Column("app_id", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("strategy", String(100), primary_key=True),
    *_rollup_sums(),
)

# Hourly dashboard sums, one series per (group, dimension, value): app_id is the group or
# "*" for all groups together; dim is "total" (value ""), "model" or "strategy". Each log
# row adds to six series, so a dashboard reads exactly the rows it shows, already summed.
usage_rollups_hourly = Table(
    "usage_rollups_hourly",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("dim", String(16), primary_key=True),
    Column("bucket_ms", BigInteger, primary_key=True),  # start of the hour (UTC)
    Column("value", String(200), primary_key=True),
    *_rollup_sums(),
)

# Number of usage_logs rows per hour and per day (grain_ms) for every combination of the
# log search's facet columns. Written by the same writer transaction as the rows, so a
# search's total and facets can be summed from here instead of counting the log.
usage_log_counts = Table(
    "usage_log_counts",
    metadata,
    Column("grain_ms", Integer, primary_key=True),  # 3_600_000 (hour) or 86_400_000 (day)
    Column("bucket_ms", BigInteger, primary_key=True),  # start of the hour / UTC day
    Column("app_id", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("channel", Integer, primary_key=True),
    Column("token_name", String(100), primary_key=True),
    Column("code", Integer, primary_key=True),
    Column("logs", BigInteger, nullable=False, default=0),
)

# Log search orderings (newest first) for the filters seed 001 combines.
Index("ix_usage_logs_app_model_created", usage_logs.c.app_id, usage_logs.c.model,
      usage_logs.c.created_ms, usage_logs.c.id)
Index("ix_usage_logs_app_token_created", usage_logs.c.app_id, usage_logs.c.token_name,
      usage_logs.c.created_ms, usage_logs.c.id)
Index("ix_usage_logs_channel_created", usage_logs.c.channel, usage_logs.c.created_ms,
      usage_logs.c.id)
# Errors are a small share of the log: partial indexes keep "code_type=error" pages cheap.
Index("ix_usage_logs_errors_created", usage_logs.c.created_ms, usage_logs.c.id,
      postgresql_where=usage_logs.c.code != 200, sqlite_where=usage_logs.c.code != 200)
Index("ix_usage_logs_app_errors_created", usage_logs.c.app_id, usage_logs.c.created_ms,
      usage_logs.c.id,
      postgresql_where=usage_logs.c.code != 200, sqlite_where=usage_logs.c.code != 200)

# --- the web console: operators, their sessions, the audit log, per-user daily usage

operators = Table(
    "operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("role", String(10), nullable=False),  # admin | viewer
    Column("auth_version", Integer, nullable=False, default=1),  # bumped on role/password change
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Server-side console sessions, shared by every instance. The cookie holds the session id;
# only its SHA-256 is stored. ``stamp`` ties the session to the credential it was made
# from (the admin key's digest, or the operator's auth_version): when that changes, it ends.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("operator", String(64), nullable=False, index=True),  # "" when signed in with the admin key
    Column("role", String(10), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("stamp", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("seen_ms", BigInteger, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_ms", BigInteger, nullable=False, index=True),
    Column("actor", String(100), nullable=False),  # "admin-key" or "operator:<name>"
    Column("action", String(10), nullable=False),  # the HTTP method
    Column("object", String(500), nullable=False),  # the Admin API path written
    Column("status", Integer, nullable=False),
    Column("before", JSON, nullable=True),  # secrets masked
    Column("after", JSON, nullable=True),
    sqlite_autoincrement=True,
)

# Per-user daily sums, added by the writer in the log rows' own transaction, so a user's
# usage totals never scan the log.
user_usage_daily = Table(
    "user_usage_daily",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("day_ms", BigInteger, primary_key=True),  # start of the UTC day
    Column("requests", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("total_tokens", BigInteger, nullable=False, default=0),
    Column("used_amount", Money, nullable=False, default=0),
)
