"""What the batched writer does with each kind of row: one transaction script per kind.

Each script is plain SQL run by ``aigate.store.script`` (on SQLite the whole flush is one
hop to the database thread). Rows arrive as dicts keyed by column name; missing columns
take the table's defaults, JSON columns are encoded here.

The rollups (``aigate.store.rollups``) follow the log rows in two ways:

* on PostgreSQL each flush adds its rows in its own transaction (one round trip);
* on SQLite every request's script waits behind the writer's flush on the one
  connection, and adding a flush's rows to the rollups cost about a third of it (an
  upsert per key for every few dozen rows). There ``usage_rollups_state.rolled_through``
  (migration 0018) holds the highest log id in the rollups, and after its commits the
  writer adds the rows above it, ``ROLLUP_BATCH_ROWS`` at a time, the watermark moved in
  the same transaction (ids never go back: ``usage_logs`` is AUTOINCREMENT). Whatever
  reads the rollups first calls ``current_rollups``, which adds what is left, so a row
  counts from the moment it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache, partial
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnDefault, Numeric, Table

from aigate.store import log_index, rollups
from aigate.store import tables as t
from aigate.store.script import run_script
from aigate.store.text import UserString, UserText, bind_user_text
from aigate.store.upkeep import Handled, WatermarkUpkeep, in_parts
from aigate.store.writer import BatchWriter

ROLLUP_STATE = t.SQLITE_ROLLUP_STATE_TABLE
# One batch of rollups on SQLite: about 1 ms on the writer's connection (4 µs a row, in
# SQLite's C code), where adding the same rows inside the flush cost ~33 µs a row.
ROLLUP_BATCH_ROWS = 256

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


def _adding(table: Table, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    """The conflict clause that adds a row's sums to those of the row with its key."""
    sets = ", ".join(f'"{c}" = {table.name}."{c}" + excluded."{c}"' for c in sums)
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"


@cache
def _add_on_conflict(table: Table, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    return _insert_sql(table, _adding(table, keys, sums))


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
    """Insert the rows and add them to the rollups in one transaction (the benchmark's
    loader, and tests that want rows as a flush leaves them on either database)."""
    insert_usage_logs(db, rows)
    if db.dialect != "sqlite":
        add_rollups(db, rows)
        return
    while roll_up_new_rows(db).more:
        pass


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
    _add_sums(db, rollups.ROLLUPS, rows, rollups.deltas(rows))


def _add_sums(db, targets, rows: list[dict[str, Any]], row_deltas: list[tuple]) -> None:
    """Add the rows to the ``targets`` rollups and to the log counts."""
    for rollup in targets:
        db.many(
            _add_on_conflict(rollup.table, rollup.key_columns, rollup.sums),
            [_bind(db, rollup.table, r) for r in rollups.aggregate(rollup, rows, row_deltas)],
        )
    db.many(
        _add_on_conflict(t.usage_log_counts, rollups.LOG_COUNT_KEYS, ("logs",)), rollups.log_counts(rows, row_deltas)
    )


# SQLite: the log rows above the watermark, summed in SQL.
_SUM_SQL = {
    "requests": "count(*)",
    "errors": "sum(code != 200)",
    "input_tokens": "sum(input_tokens)",
    "output_tokens": "sum(output_tokens)",
    "total_tokens": "sum(total_tokens)",
    "used_amount": "sum(used_amount)",
    "ttfb_ms_sum": "sum(ttfb_ms)",
}
_NEW_ROWS = "FROM usage_logs WHERE id > :done AND id <= :upto"
# The dashboard series and the log counts: summed to the finest key they need (a few
# keys per batch), then spread over their keys in Python as the flush does.
_BY_MINUTE_SQL = (
    f"SELECT created_ms / {rollups.MINUTE_MS} * {rollups.MINUTE_MS}, app_id, model, "
    f"coalesce(json_extract(metadata, '$.strategy'), ''), code, channel, token_name, "
    f"{', '.join(_SUM_SQL[c] for c in rollups.SUMS)} {_NEW_ROWS} GROUP BY 1, 2, 3, 4, 5, 6, 7"
)
# The per-user daily totals have a key per user: one upsert straight from the log rows.
_USER_DAILY = rollups.USER_DAILY
_USER_DAILY_SQL = (
    f"INSERT INTO {_USER_DAILY.table.name} ({', '.join(_USER_DAILY.key_columns + _USER_DAILY.sums)}) "
    f'SELECT app_id, "user", created_ms / {rollups.DAY_MS} * {rollups.DAY_MS}, '
    f"{', '.join(_SUM_SQL[c] for c in _USER_DAILY.sums)} {_NEW_ROWS} GROUP BY 1, 2, 3 "
    + _adding(_USER_DAILY.table, _USER_DAILY.key_columns, _USER_DAILY.sums)
)


def _by_minute(found: list[tuple]) -> tuple[list[dict[str, Any]], list[tuple]]:
    """The summed rows as rollup rows and their deltas."""
    rows, row_deltas = [], []
    for r in found:
        created_ms, app_id, model, strategy, code, channel, token_name, *counts, amount, ttfb = r
        rows.append(
            dict(
                created_ms=created_ms,
                app_id=app_id,
                model=model,
                metadata={"strategy": strategy},
                code=code,
                channel=channel,
                token_name=token_name,
            )
        )
        row_deltas.append((*counts, Decimal(str(amount)), ttfb))  # stored as REAL: its shortest repr
    return rows, row_deltas


def roll_up_new_rows(db, limit: int = ROLLUP_BATCH_ROWS) -> Handled:
    """SQLite: add up to ``limit`` log rows above the watermark to the rollups (a
    transaction script, in parts a waiting request's script can cut short:
    ``aigate.store.upkeep.in_parts``). The dashboard's sums are added once, for all the
    parts: a few keys a batch."""
    found: list[tuple] = []

    def part(db, span: dict[str, int]) -> None:
        found.extend(db.rows(_BY_MINUTE_SQL, span))
        db.rows(_USER_DAILY_SQL, span)

    handled = in_parts(db, f"{ROLLUP_STATE}.rolled_through", limit, part)
    if found:
        _add_sums(db, rollups.DASHBOARD.values(), *_by_minute(found))
    return handled


async def current_rollups(engine) -> None:
    """Bring the rollups up to date before reading them: on SQLite, add the log rows the
    writer has not added yet (usually none, or the last fraction of a second's)."""
    if engine.dialect.name == "sqlite":
        while (await run_script(engine, roll_up_new_rows)).more:
            pass


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
    writer.register("ai_request", write_ai_requests)
    writer.register("user", write_users)
    if writer.engine.dialect.name != "sqlite":
        # the writer may commit a batch in parts: each part adds its own rows to the rollups
        writer.register("usage_log", insert_usage_logs, finish=add_rollups)
        return
    # deferred work on SQLite's one writer connection, between batches
    writer.register("usage_log", insert_usage_logs)
    for script, batch_rows, min_rows in (
        (roll_up_new_rows, ROLLUP_BATCH_ROWS, ROLLUP_BATCH_ROWS),
        (log_index.index_new_rows, log_index.BATCH_ROWS, log_index.MIN_BATCH_ROWS),
    ):
        upkeep = WatermarkUpkeep(
            writer.engine, lambda: writer.rows_written, script, batch_rows=batch_rows, min_rows=min_rows
        )
        writer.after_commit(upkeep.step)
