"""Reading and deleting a user's chats (SPEC §5.3). Every query is scoped by the caller."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from aigate.auth.caller import Caller
from aigate.clock import iso_ms
from aigate.errors import not_found
from aigate.services import Services
from aigate.store import tables as t

C, X = t.chats.c, t.chat_exchanges.c


def _mine(caller: Caller):
    return (C.app_id == caller.app.id) & (C.user_id == caller.user_id)


async def history(services: Services, caller: Caller, chat_id: str, page: int, page_size: int) -> dict[str, Any]:
    async with services.engine.connect() as conn:
        chat = (await conn.execute(select(C.chat_id).where(_mine(caller), C.chat_id == chat_id))).first()
        if chat is None:
            raise not_found(f"chat_id: '{chat_id}' not found")
        total = (await conn.execute(select(func.count()).where(X.chat_id == chat_id))).scalar_one()
        rows = (
            await conn.execute(
                select(t.chat_exchanges)
                .where(X.chat_id == chat_id)
                .order_by(X.id.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            )
        ).all()
    return {
        "chat_histories": [
            {
                "chat_id": r.chat_id,
                "app_id": r.app_id,
                "user_id": r.user_id,
                "token": r.tokens,
                "strategy": r.strategy,
                "role": "",
                "messages": r.messages,
                "sys_created_time": iso_ms(r.created_ms),
                "sys_updated_time": iso_ms(r.updated_ms),
            }
            for r in rows
        ],
        "total_chat": total,
    }


async def list_chats(services: Services, caller: Caller, page: int, page_size: int) -> dict[str, Any]:
    async with services.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).where(_mine(caller)))).scalar_one()
        rows = (
            await conn.execute(
                select(t.chats)
                .where(_mine(caller))
                .order_by(C.updated_ms.desc(), C.chat_id)
                .limit(page_size)
                .offset((page - 1) * page_size)
            )
        ).all()
    return {
        "chats": [
            {
                "chat_id": r.chat_id,
                "strategy": r.strategy,
                "title": r.title,
                "sys_created_time": iso_ms(r.created_ms),
                "sys_updated_time": iso_ms(r.updated_ms),
            }
            for r in rows
        ],
        "total": total,
    }


async def delete_chats(services: Services, caller: Caller, chat_ids: list[str]) -> None:
    async with services.engine.begin() as conn:
        owned = [r[0] for r in await conn.execute(select(C.chat_id).where(_mine(caller), C.chat_id.in_(set(chat_ids))))]
        if owned:
            await conn.execute(delete(t.chat_exchanges).where(X.chat_id.in_(owned)))
            await conn.execute(delete(t.chats).where(C.chat_id.in_(owned)))
