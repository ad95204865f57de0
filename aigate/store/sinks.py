"""What the batched writer does with each kind of row (one handler per kind)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.store import tables as t
from aigate.store.upsert import _insert, insert_ignore, upsert
from aigate.store.writer import BatchWriter

DETAIL_FIELDS = (
    "request_body",
    "request_body_truncated",
    "response_body",
    "response_body_truncated",
)
ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "used_amount", "ttfb_ms_sum")
MINUTE_MS = 60_000


async def write_usage_logs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    log_rows = [{k: v for k, v in row.items() if k not in DETAIL_FIELDS} for row in rows]
    result = await conn.execute(
        insert(t.usage_logs).returning(t.usage_logs.c.id, sort_by_parameter_order=True), log_rows
    )
    ids = [r[0] for r in result]
    details = [
        {"log_id": log_id, **{k: row.get(k, False if k.endswith("_truncated") else "") for k in DETAIL_FIELDS}}
        for log_id, row in zip(ids, rows)
        if row.get("request_body") or row.get("response_body")
    ]
    if details:
        await conn.execute(insert(t.request_details), details)
    await _add_rollups(conn, rows)


async def _add_rollups(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    sums: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        meta = row.get("metadata") or {}
        key = (row["created_ms"] // MINUTE_MS * MINUTE_MS, row["app_id"], row["model"], meta.get("strategy", ""))
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = {c: 0 for c in ROLLUP_SUMS}
            acc["used_amount"] = Decimal(0)
        acc["requests"] += 1
        acc["errors"] += 0 if row["code"] == 200 else 1
        acc["input_tokens"] += row.get("input_tokens", 0)
        acc["output_tokens"] += row.get("output_tokens", 0)
        acc["total_tokens"] += row.get("total_tokens", 0)
        acc["used_amount"] += Decimal(row.get("used_amount", 0))
        acc["ttfb_ms_sum"] += row.get("ttfb_ms", 0)
    values = [
        {"bucket_ms": k[0], "app_id": k[1], "model": k[2], "strategy": k[3], **v}
        for k, v in sorted(sums.items())  # a fixed order avoids deadlocks between instances
    ]
    stmt = _insert(conn, t.usage_rollups)
    stmt = stmt.on_conflict_do_update(
        index_elements=["bucket_ms", "app_id", "model", "strategy"],
        set_={c: t.usage_rollups.c[c] + stmt.excluded[c] for c in ROLLUP_SUMS},
    )
    await conn.execute(stmt, values)


async def write_ai_requests(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    # Upsert: the final state of a record may follow an earlier write of the same id.
    await upsert(conn, t.ai_requests, rows, ["request_id"])


async def write_chat_exchanges(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    chats: dict[str, dict[str, Any]] = {}
    for row in rows:
        chat = chats.setdefault(
            row["chat_id"],
            dict(chat_id=row["chat_id"], app_id=row["app_id"], user_id=row["user_id"],
                 strategy=row["strategy"], title=row.get("title", ""),
                 created_ms=row["created_ms"], updated_ms=row["created_ms"]),
        )
        chat["updated_ms"] = max(chat["updated_ms"], row["created_ms"])
    await upsert(conn, t.chats, list(chats.values()), ["chat_id"], update=["updated_ms"])
    await conn.execute(
        insert(t.chat_exchanges),
        [
            dict(chat_id=r["chat_id"], app_id=r["app_id"], user_id=r["user_id"],
                 strategy=r["strategy"], messages=r["messages"], tokens=r.get("tokens", 0),
                 request_id=r.get("request_id"), created_ms=r["created_ms"], updated_ms=r["created_ms"])
            for r in rows
        ],
    )


async def write_users(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    unique = {(r["app_id"], r["user_id"]): r for r in rows}
    await conn.execute(insert_ignore(conn, t.users, ["app_id", "user_id"]), list(unique.values()))


def register_sinks(writer: BatchWriter) -> None:
    writer.register("usage_log", write_usage_logs)
    writer.register("ai_request", write_ai_requests)
    writer.register("chat_exchange", write_chat_exchanges)
    writer.register("user", write_users)
