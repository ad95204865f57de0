"""The end user's AI request records (seed 000, SPEC §5.5–5.6): the record's JSON shape,
``custom_response`` extraction, reading one, the history query and deletion.

Every query is scoped by the caller's (app_id, user_id): another user's record is
indistinguishable from one that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, delete, select, update

from aigate.auth.caller import Caller
from aigate.clock import iso_ms
from aigate.errors import not_found
from aigate.providers.http_job import search
from aigate.services import Services
from aigate.store import tables as t

T = t.ai_requests
C = T.c

STATUSES = ("succeeded", "failed", "processing", "pending", "queueing")
ACTIVE = ("pending", "queueing", "processing")  # an async job still running
MAX_SNOWFLAKE = (1 << 63) - 1
NO_PRICE = {"input_per_price": 0, "output_per_price": 0, "input_token": 0, "output_token": 0}

# The columns a record's JSON is built from (the history query reads only these).
RECORD_COLUMNS = (
    C.request_id,
    C.platform_id,
    C.platform,
    C.module,
    C.strategy,
    C.status,
    C.response,
    C.error,
    C.unit_price,
    C.custom_response,
    C.created_ms,
    C.updated_ms,
)


def record_json(row: Mapping[str, Any] | RowMapping) -> dict[str, Any]:
    """A record with exactly the fields of seed 000."""
    return {
        "request_id": str(row["request_id"]),
        "platform_id": row["platform_id"] or "",
        "platform": row["platform"] or "",
        "module": row["module"],
        "strategy": row["strategy"],
        "status": row["status"],
        "response": row["response"] or "",
        "error": row["error"] or "",
        "unit_price": row["unit_price"] or dict(NO_PRICE),
        "custom_response": row["custom_response"],
        "created_time": iso_ms(row["created_ms"]),
        "updated_time": iso_ms(row["updated_ms"]),
    }


def custom_response(fields: Mapping[str, str], data: Any) -> dict[str, Any] | None:
    """Each configured field's JMESPath over the upstream JSON; None when none are configured."""
    if not fields:
        return None
    return {name: search(expression, data) for name, expression in fields.items()}


def _mine(caller: Caller):
    return (C.app_id == caller.app.id) & (C.user_id == caller.user_id)


def parse_ids(values: list[str]) -> set[int]:
    """The ids that can name a record; anything else can match nothing and is dropped."""
    return {int(v) for v in values if v.isdigit() and int(v) <= MAX_SNOWFLAKE}


async def read_one(services: Services, caller: Caller, request_id: str) -> dict[str, Any]:
    ids = parse_ids([request_id])
    row = None
    if ids:
        async with services.engine.connect() as conn:
            row = (await conn.execute(select(*RECORD_COLUMNS).where(_mine(caller), C.request_id == ids.pop()))).first()
    if row is None:
        raise not_found(f"request_id: '{request_id}' not found")
    return record_json(row._mapping)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    page: int
    page_size: int
    start_ms: int | None = None  # exclusive bounds on the created time
    end_ms: int | None = None
    statuses: tuple[str, ...] = ()
    from_appserver: bool | None = None


async def history(services: Services, caller: Caller, q: HistoryQuery) -> dict[str, Any]:
    """Newest first; ``has_more`` from one extra row, so no count is ever taken."""
    if q.start_ms is not None and q.end_ms is not None and q.start_ms >= q.end_ms:
        return {"data": [], "has_more": False}
    where = [_mine(caller)]
    if q.start_ms is not None:
        where.append(C.created_ms > q.start_ms)
    if q.end_ms is not None:
        where.append(C.created_ms < q.end_ms)
    if q.statuses:
        where.append(C.status.in_(q.statuses))
    if q.from_appserver is not None:
        where.append(C.from_appserver == q.from_appserver)
    # (app_id, user_id, created_ms) is indexed; the snowflake only breaks ties
    stmt = (
        select(*RECORD_COLUMNS)
        .where(*where)
        .order_by(C.created_ms.desc(), C.request_id.desc())
        .limit(q.page_size + 1)
        .offset((q.page - 1) * q.page_size)
    )
    async with services.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {"data": [record_json(r._mapping) for r in rows[: q.page_size]], "has_more": len(rows) > q.page_size}


async def delete_records(services: Services, caller: Caller, request_ids: list[str]) -> int:
    """Delete the caller's finished records and the bodies of their usage log rows.

    A record whose async job is still running is kept: its job goes on, is billed and
    logged; it can be deleted once it has finished. Returns how many records went.
    """
    ids = parse_ids(request_ids)
    if not ids:
        return 0
    await services.writer.flush()  # the log rows of just-finished calls are in the database
    logs = t.usage_logs
    async with services.engine.begin() as conn:
        owned = (
            await conn.execute(
                select(C.request_id, C.platform_id).where(_mine(caller), C.request_id.in_(ids), C.status.not_in(ACTIVE))
            )
        ).all()
        if not owned:
            return 0
        await conn.execute(delete(T).where(_mine(caller), C.request_id.in_([r.request_id for r in owned])))
        log_ids = [r.platform_id for r in owned if r.platform_id]
        if log_ids:
            # the operator keeps the billing fields; the content goes with the record
            theirs = (
                (logs.c.request_id.in_(log_ids)) & (logs.c.app_id == caller.app.id) & (logs.c.user == caller.user_id)
            )
            await conn.execute(
                delete(t.request_details).where(t.request_details.c.log_id.in_(select(logs.c.id).where(theirs)))
            )
            await conn.execute(update(logs).where(theirs).values(content=""))
    return len(owned)
