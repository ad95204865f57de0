"""Responses aigate stores itself (``relay_responses``), scoped to the relay token's app.

A stored response keeps its whole conversation (input items, then output items), so a
later ``previous_response_id`` rebuilds the thread on whichever platform serves the next
call, and upstreams are always asked ``store: false``. The row is committed before the
answer leaves, so the client's next call always finds it. Ids are ``resp_`` + 48 hex
characters (24 random bytes): unguessable, and unknown to the upstream.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from aigate.clock import now_ms
from aigate.services import Services
from aigate.store import tables as t

R = t.relay_responses.c


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


@dataclass(slots=True)
class Stored:
    id: str
    model: str
    conversation: list[dict[str, Any]]
    response: dict[str, Any]


async def save(
    services: Services,
    *,
    response_id: str,
    app_id: str,
    token_id: int,
    model: str,
    conversation: list[dict[str, Any]],
    response: dict[str, Any],
) -> None:
    async with services.engine.begin() as conn:
        await conn.execute(
            t.relay_responses.insert().values(
                id=response_id,
                app_id=app_id,
                token_id=token_id,
                model=model,
                created_ms=now_ms(),
                conversation=conversation,
                response=response,
            )
        )


async def load(services: Services, app_id: str, response_id: str) -> Stored | None:
    """The response, when it exists and belongs to this app."""
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(
                select(R.id, R.model, R.conversation, R.response).where(R.id == response_id, R.app_id == app_id)
            )
        ).first()
    if row is None:
        return None
    return Stored(row.id, row.model, row.conversation, row.response)


async def remove(services: Services, app_id: str, response_id: str) -> bool:
    async with services.engine.begin() as conn:
        result = await conn.execute(delete(t.relay_responses).where(R.id == response_id, R.app_id == app_id))
    return result.rowcount > 0
