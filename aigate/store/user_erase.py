"""Erase one end user of one app: every trace of their content goes, billing totals stay.

Deleted: chats and their exchanges, AI request records (raw responses, custom
responses, async job state), asset balances, usage counters, the ``users`` row, and the
stored request/response bodies of the user's usage log rows.

Kept, without anything that identifies the user:

* usage log rows keep their billing fields (tokens, used_amount, price, model, channel,
  times, status) so per-app and per-model totals still add up; ``content`` (error text
  that may quote the input) and ``ip`` are blanked, and ``user`` becomes
  ``erased:<16 hex>``;
* asset ledger rows (amounts, reasons, grant idempotency keys; they carry no content)
  keep the money trail of purchases and spending, with ``user_id`` replaced by the same
  marker.

The marker is a SHA-256 of the user id with a random salt: the rows of one erased user
still group together (totals per user add up), but the marker cannot be traced back to
the user id by hashing candidate ids, and erasing the same id again later gives another
marker. Nothing outside (app_id, user_id) is touched.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.store import tables as t


def erased_marker(user_id: str) -> str:
    salt = secrets.token_bytes(16)
    return "erased:" + hashlib.sha256(salt + user_id.encode()).hexdigest()[:16]


async def erase_user(engine: AsyncEngine, app_id: str, user_id: str) -> dict[str, int]:
    """Erase in one transaction; returns how many rows each step deleted or anonymised."""
    marker = erased_marker(user_id)
    counts: dict[str, int] = {}
    async with engine.begin() as conn:
        for name, table in (
            ("chat_exchanges", t.chat_exchanges),
            ("chats", t.chats),
            ("ai_requests", t.ai_requests),
            ("user_assets", t.user_assets),
            ("asset_holds", t.asset_holds),  # a running call's settlement then finds no hold
            ("usage_counters", t.usage_counters),
            ("users", t.users),
        ):
            result = await conn.execute(delete(table).where((table.c.app_id == app_id) & (table.c.user_id == user_id)))
            counts[name] = result.rowcount

        logs = t.usage_logs
        mine = (logs.c.app_id == app_id) & (logs.c.user == user_id)
        result = await conn.execute(
            delete(t.request_details).where(t.request_details.c.log_id.in_(select(logs.c.id).where(mine)))
        )
        counts["request_details"] = result.rowcount
        result = await conn.execute(update(logs).where(mine).values(content="", ip="", user=marker))
        counts["usage_logs_anonymised"] = result.rowcount

        ledger = t.asset_ledger
        result = await conn.execute(
            update(ledger).where((ledger.c.app_id == app_id) & (ledger.c.user_id == user_id)).values(user_id=marker)
        )
        counts["ledger_anonymised"] = result.rowcount

        daily = t.user_usage_daily
        result = await conn.execute(
            update(daily).where((daily.c.app_id == app_id) & (daily.c.user_id == user_id)).values(user_id=marker)
        )
        counts["usage_totals_anonymised"] = result.rowcount
    return counts
