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

from aigate.store.text import UserString, UserText

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
    Column("client_trust", JSON, nullable=True),  # SPEC §10: CORS, identity providers, attestation, edge limits
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
    Column("user_id", String(128), primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
)

user_assets = Table(
    "user_assets",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("quantity_micros", BigInteger, nullable=False),  # millionths of a credit: exact
    Column("last_recovery_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

asset_ledger = Table(
    "asset_ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("asset", String(100), nullable=False),
    Column("delta_micros", BigInteger, nullable=False),  # millionths of a credit
    Column("balance_micros", BigInteger, nullable=False),  # the balance after this entry
    Column("charge_micros", BigInteger, nullable=True),  # settle: the call's actual charge
    # initial|reserve|refund|settle|release|grant|recovery|adjust
    Column("reason", String(20), nullable=False),
    Column("request_id", String(24), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("note", String(200), nullable=True),  # an operator's reason for an adjustment
    # NULL keys never collide, so only grants (which carry a key) are deduplicated
    UniqueConstraint("app_id", "user_id", "asset", "idempotency_key"),
    Index("ix_asset_ledger_user", "app_id", "user_id", "id"),
    sqlite_autoincrement=True,
)

# Open holds of usage-based costs: reserved before the call, deleted by exactly one of its
# settlement, its release or the sweep of lapsed leases (whoever deletes the row wins).
asset_holds = Table(
    "asset_holds",
    metadata,
    Column("request_id", String(24), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("asset", String(100), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("holder", String(100), nullable=False),  # the instance running the call
    Column("lease_until_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_asset_holds_lease", "lease_until_ms"),
    Index("ix_asset_holds_user", "app_id", "user_id"),
)

usage_counters = Table(
    "usage_counters",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
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
    Column("user_id", String(128), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("title", UserString(100), nullable=False, default=""),
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
    Column("user_id", String(128), nullable=False),
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
    Column("user_id", String(128), nullable=False),
    Column("from_appserver", Boolean, nullable=False),
    Column("module", String(20), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("platform", String(32), nullable=False, default=""),  # platform type
    Column("platform_id", String(24), nullable=False, default=""),  # the usage log's request_id
    Column("status", String(12), nullable=False),
    Column("response", UserText, nullable=True),
    Column("error", UserText, nullable=False, default=""),
    Column("unit_price", JSON, nullable=True),
    Column("custom_response", JSON, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # async job state: which platform runs it, the upstream job id, the reserved cost
    Column("job", JSON, nullable=True),
    Column("next_poll_ms", BigInteger, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_until_ms", BigInteger, nullable=True),
    # what the call cost the user: {asset, charge[, hold]} (usage-based costs settle it)
    Column("credits", JSON, nullable=True),
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
    Column("content", UserText, nullable=False, default=""),
    Column("endpoint", String(200), nullable=False, default=""),
    Column("app_id", String(64), nullable=False, default=""),  # the log's group
    Column("channel", Integer, nullable=False, default=0),
    Column("mode", Integer, nullable=False, default=0),
    Column("model", String(200), nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
    Column("user", String(128), nullable=False, default=""),
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
    # The ordering indexes (newest first: created_ms, id) carry every column the log
    # search filters on after them, so a page, deep or not, is an index-only walk.
    Index("ix_usage_logs_created", "created_ms", "id", "code", "app_id", "model", "token_name", "channel"),
    Index("ix_usage_logs_app_created", "app_id", "created_ms", "id", "code", "model", "token_name", "channel"),
    Index("ix_usage_logs_model_created", "model", "created_ms", "id", "code", "app_id", "token_name", "channel"),
    Index("ix_usage_logs_request_id", "request_id"),
    Index("ix_usage_logs_user_created", "user", "created_ms", "id"),
    sqlite_autoincrement=True,
)

request_details = Table(
    "request_details",
    metadata,
    Column("log_id", BigInteger, primary_key=True, autoincrement=False),
    Column("request_body", UserText, nullable=False, default=""),
    Column("request_body_truncated", Boolean, nullable=False, default=False),
    Column("response_body", UserText, nullable=False, default=""),
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
_L = usage_logs.c
Index("ix_usage_logs_app_model_created", _L.app_id, _L.model, _L.created_ms, _L.id, _L.code, _L.token_name, _L.channel)
Index("ix_usage_logs_app_token_created", _L.app_id, _L.token_name, _L.created_ms, _L.id, _L.code, _L.model, _L.channel)
Index("ix_usage_logs_channel_created", _L.channel, _L.created_ms, _L.id, _L.code, _L.app_id, _L.model, _L.token_name)
# Errors are a small share of the log: partial indexes keep "code_type=error" pages cheap.
Index(
    "ix_usage_logs_errors_created",
    _L.created_ms,
    _L.id,
    _L.code,
    _L.app_id,
    _L.model,
    _L.token_name,
    _L.channel,
    postgresql_where=_L.code != 200,
    sqlite_where=_L.code != 200,
)
Index(
    "ix_usage_logs_app_errors_created",
    _L.app_id,
    _L.created_ms,
    _L.id,
    _L.code,
    _L.model,
    _L.token_name,
    _L.channel,
    postgresql_where=_L.code != 200,
    sqlite_where=_L.code != 200,
)

# Keyword search (a case-insensitive substring of these columns). PostgreSQL: a pg_trgm GIN
# index per column (migration 0012 qualifies the operator class with pg_trgm's schema).
# SQLite: the FTS5 table usage_logs_fts (trigram tokenizer, external content), which Core
# cannot declare; the writer indexes new rows in batches up to the log id kept in
# usage_logs_fts_state (aigate.store.log_index), triggers keep indexed rows exact on
# delete and update. migration_filter() hides both tables from comparisons.
KEYWORD_COLUMNS = ("request_id", "user", "model", "token_name", "content")
for _name in KEYWORD_COLUMNS:
    Index(
        f"ix_usage_logs_trgm_{_name}",
        usage_logs.c[_name],
        postgresql_using="gin",
        postgresql_ops={_name: "gin_trgm_ops"},
        info={"dialect": "postgresql"},
    )
SQLITE_FTS_TABLE = "usage_logs_fts"
SQLITE_FTS_STATE_TABLE = "usage_logs_fts_state"
# SQLite only: the highest log id already added to the rollups (aigate.store.sinks)
SQLITE_ROLLUP_STATE_TABLE = "usage_rollups_state"

# Daily dashboard sums, laid out like usage_rollups_hourly (bucket_ms: start of the UTC
# day): a dashboard by day reads one row per series and day.
usage_rollups_daily = Table(
    "usage_rollups_daily",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("dim", String(16), primary_key=True),
    Column("bucket_ms", BigInteger, primary_key=True),
    Column("value", String(200), primary_key=True),
    *_rollup_sums(),
)


def migration_filter(dialect: str):
    """An Alembic ``include_object`` hook for comparing this metadata with a database:
    indexes that exist on one database only, and SQLite's FTS5 and rollup state tables,
    are left out."""

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        if type_ == "table" and name and (name.startswith(SQLITE_FTS_TABLE) or name == SQLITE_ROLLUP_STATE_TABLE):
            return False
        if type_ == "index":
            declared = obj if not reflected else compare_to
            only = declared.info.get("dialect") if declared is not None else None
            return only is None or only == dialect
        return True

    return include_object


# The batched writer's local journals (aigate.store.journal): the highest row sequence of
# each journal file already replayed, committed with the rows so a replay is idempotent.
writer_journal = Table(
    "writer_journal",
    metadata,
    Column("name", String(200), primary_key=True),  # the journal file's name
    Column("replayed_through", BigInteger, nullable=False),
)

# --- Responses API (relay): what aigate stores itself, so previous_response_id rebuilds a
# thread on any platform. ``id`` is the unguessable id the client saw (``resp_`` + 32 random
# bytes); rows are scoped to the relay token's app.
relay_responses = Table(
    "relay_responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("conversation", JSON, nullable=False),  # input items + output items, in order
    Column("response", JSON, nullable=False),  # the Response object as answered
)
Index("ix_relay_responses_created_ms", relay_responses.c.created_ms)

# --- operating many platforms: webhook endpoints and their durable delivery queue

app_webhooks = Table(
    "app_webhooks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("spec", JSON, nullable=False),  # the validated WebhookCfg (secret included)
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("app_id", "url"),
    sqlite_autoincrement=True,
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("msg_id", String(40), nullable=False, unique=True),  # the `webhook-id` header: one per delivery
    Column("app_id", String(64), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body that is signed and sent
    Column("status", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_until_ms", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("round_ms", BigInteger, nullable=False),  # start of the retry schedule (creation or re-send)
    Column("updated_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_ms"),
    Index("ix_webhook_deliveries_app", "app_id", "status", "created_ms"),
    sqlite_autoincrement=True,
)


# --- revoked user tokens (SPEC §10): tokens of (app, user) issued at or before revoked_ms are refused

token_revocations = Table(
    "token_revocations",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("revoked_ms", BigInteger, nullable=False),
    Index("ix_token_revocations_revoked", "revoked_ms"),
)


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

# Per-user daily sums, added by the writer (aigate.store.sinks), so a user's usage totals
# never scan the log.
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
