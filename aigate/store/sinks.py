"""What the batched writer does with each kind of row: one transaction script per kind.

Each script is plain SQL run by ``aigate.store.script`` (on SQLite the whole flush is one
hop to the database thread). Rows arrive as dicts keyed by column name; missing columns
take the table's defaults, JSON columns are encoded here.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache, partial
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnDefault, Numeric, Table

from aigate.store import rollups
from aigate.store import tables as t
from aigate.store.log_index import KeywordIndexer
from aigate.store.text import UserString, UserText, bind_user_text
from aigate.store.writer import BatchWriter

DETAIL_FIELDS = (
    "request_body",
    "request_body_truncated",
    "response_body",
    "response_body_truncated",
)


# --- SQL built once from the table definitions


@cache
def _layout(table: Table) -> tuple[tuple[str, ...], dict[str, Any], frozenset, frozenset, dict[str, Any]]:
    """Insertable columns, their defaults, and which need encoding."""
    cols = tuple(c.name for c in table.columns if not (c.primary_key and c.autoincrement is True))
    defaults = {}
    for c in table.columns:
        default = c.default
        if isinstance(default, ColumnDefault) and default.is_scalar:
            defaults[c.name] = default.arg
        elif isinstance(default, ColumnDefault) and default.is_callable:  # e.g. default=dict
            defaults[c.name] = default.arg.__wrapped__()
    json_cols = frozenset(c.name for c in table.columns if isinstance(c.type, JSON))
    num_cols = frozenset(c.name for c in table.columns if isinstance(c.type, Numeric))
    user_text = {c.name: c.type for c in table.columns if isinstance(c.type, (UserText, UserString))}
    return cols, defaults, json_cols, num_cols, user_text


@cache
def _insert_sql(table: Table, conflict: str = "", returning: str = "") -> str:
    cols = _layout(table)[0]
    names = ", ".join(f'"{c}"' for c in cols)  # quoted: "user" is reserved in PostgreSQL
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join(':' + c for c in cols)})"
    return sql + (f" {conflict}" if conflict else "") + (f" RETURNING {returning}" if returning else "")


@cache
def _add_on_conflict(table: Table, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    sets = ", ".join(f'"{c}" = {table.name}."{c}" + excluded."{c}"' for c in sums)
    return _insert_sql(table, f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")


@cache
def _binders(table: Table, dialect: str) -> tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]:
    """Per insertable column: its default and what encodes a value that is not None."""
    cols, defaults, json_cols, num_cols, user_text = _layout(table)
    plan = []
    for c in cols:
        encode: Callable[[Any], Any] | None = None
        if c in json_cols:
            encode = _json
        elif c in num_cols:
            encode = str if dialect == "sqlite" else Decimal
        elif c in user_text and dialect != "sqlite":  # NUL kept on PostgreSQL too (aigate.store.text)
            encode = partial(bind_user_text, user_text[c], dialect=dialect)
        plan.append((c, defaults.get(c), encode))
    return tuple(plan)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _bind(db, table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as the driver takes it: defaults filled, JSON encoded, decimals bound as the
    database stores them (the per-column work decided once per table, not per value)."""
    out = {}
    for c, default, encode in _binders(table, db.dialect):
        v = row.get(c, default)
        if encode is not None and v is not None:
            v = encode(v)
        out[c] = v
    return out


# --- scripts


def write_usage_logs(db, rows: list[dict[str, Any]]) -> None:
    """Insert the rows and add them to the rollups."""
    insert_usage_logs(db, rows)
    add_rollups(db, rows)


def insert_usage_logs(db, rows: list[dict[str, Any]]) -> None:
    """Insert in arrival order (ids follow it): runs of rows without bodies in one
    executemany, a row with bodies on its own to learn its id for request_details."""
    run: list[dict[str, Any]] = []
    for row in rows:
        if not (row.get("request_body") or row.get("response_body")):
            run.append(_bind(db, t.usage_logs, row))
            continue
        db.many(_insert_sql(t.usage_logs), run)
        run = []
        [(log_id,)] = db.rows(_insert_sql(t.usage_logs, returning="id"), _bind(db, t.usage_logs, row))
        detail = {"log_id": log_id, **{k: row.get(k, False if k.endswith("_truncated") else "") for k in DETAIL_FIELDS}}
        db.rows(_insert_sql(t.request_details), _bind(db, t.request_details, detail))
    db.many(_insert_sql(t.usage_logs), run)


def add_rollups(db, rows: list[dict[str, Any]]) -> None:
    """Add the rows to every rollup (``aigate.store.rollups``: the dashboard series, the
    log counts, the per-user daily totals) in the rows' own transaction: one upsert per
    key, the batch summed in memory first."""
    row_deltas = rollups.deltas(rows)
    for rollup in rollups.ROLLUPS:
        db.many(
            _add_on_conflict(rollup.table, rollup.key_columns, rollup.sums),
            [_bind(db, rollup.table, r) for r in rollups.aggregate(rollup, rows, row_deltas)],
        )
    db.many(_add_on_conflict(t.usage_log_counts, rollups.LOG_COUNT_KEYS, ("logs",)), rollups.log_counts(rows))


def write_ai_requests(db, rows: list[dict[str, Any]]) -> None:
    # Upsert: the final state of a record may follow an earlier write of the same id.
    cols = [c for c in _layout(t.ai_requests)[0] if c != "request_id"]
    conflict = "ON CONFLICT (request_id) DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
    db.many(_insert_sql(t.ai_requests, conflict), [_bind(db, t.ai_requests, r) for r in rows])


def write_chat_exchanges(db, rows: list[dict[str, Any]]) -> None:
    chats: dict[str, dict[str, Any]] = {}
    for row in rows:
        chat = chats.setdefault(
            row["chat_id"],
            dict(
                chat_id=row["chat_id"],
                app_id=row["app_id"],
                user_id=row["user_id"],
                strategy=row["strategy"],
                title=row.get("title", ""),
                created_ms=row["created_ms"],
                updated_ms=row["created_ms"],
            ),
        )
        chat["updated_ms"] = max(chat["updated_ms"], row["created_ms"])
    db.many(
        _insert_sql(t.chats, "ON CONFLICT (chat_id) DO UPDATE SET updated_ms = excluded.updated_ms"),
        [_bind(db, t.chats, c) for c in chats.values()],
    )
    db.many(
        _insert_sql(t.chat_exchanges),
        [
            _bind(
                db,
                t.chat_exchanges,
                dict(
                    chat_id=r["chat_id"],
                    app_id=r["app_id"],
                    user_id=r["user_id"],
                    strategy=r["strategy"],
                    messages=r["messages"],
                    tokens=r.get("tokens", 0),
                    request_id=r.get("request_id"),
                    created_ms=r["created_ms"],
                    updated_ms=r["created_ms"],
                ),
            )
            for r in rows
        ],
    )


def write_users(db, rows: list[dict[str, Any]]) -> None:
    unique = {(r["app_id"], r["user_id"]): r for r in rows}
    db.many(
        _insert_sql(t.users, "ON CONFLICT (app_id, user_id) DO NOTHING"),
        [_bind(db, t.users, r) for r in unique.values()],
    )


def register_sinks(writer: BatchWriter) -> None:
    # the writer may commit a batch in parts: each part adds its own rows to the rollups
    writer.register("usage_log", insert_usage_logs, finish=add_rollups)
    writer.register("ai_request", write_ai_requests)
    writer.register("user", write_users)
    if writer.engine.dialect.name == "sqlite":
        # deferred work on SQLite's one writer connection, between batches
        writer.after_commit(KeywordIndexer(writer.engine, lambda: writer.rows_written).step)
