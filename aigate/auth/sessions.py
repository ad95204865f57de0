"""Console sessions: server-side rows shared by every instance (the database), so signing
out, a role or password change, or a new ``admin_key`` ends a session everywhere.

The cookie holds a random session id; the table holds only its SHA-256. A session lasts
12 hours idle and 7 days at most; a new id is made at every sign-in. Each session has its
own CSRF token, which every non-GET request must send back (``X-CSRF-Token`` header or a
``csrf_token`` form field).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.clock import now_ms
from aigate.store import tables as t

COOKIE = "aigate_session"
IDLE_MS = 12 * 3_600_000
ABSOLUTE_MS = 7 * 86_400_000
TOUCH_EVERY_MS = 60_000  # the idle clock is refreshed at most once a minute per session
ADMIN_KEY_OPERATOR = ""  # the operator column of a session made with the admin key


@dataclass(frozen=True, slots=True)
class Session:
    operator: str  # "" for the admin key
    role: str
    csrf: str

    @property
    def actor(self) -> str:
        return f"operator:{self.operator}" if self.operator else "admin-key"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def admin_key_stamp(admin_key: str) -> str:
    """Ties an admin-key session to the key it was made with."""
    return _digest("admin-key:" + admin_key)


def operator_stamp(auth_version: int) -> str:
    return f"v{auth_version}"


async def create(engine: AsyncEngine, operator: str, role: str, stamp: str) -> tuple[str, Session]:
    """A new session (a new id every time); returns the cookie value and the session."""
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    ts = now_ms()
    async with engine.begin() as conn:
        # expired sessions of anyone are cleared here: sign-ins are rare, this stays small
        s = t.console_sessions.c
        await conn.execute(
            delete(t.console_sessions).where((s.seen_ms < ts - IDLE_MS) | (s.created_ms < ts - ABSOLUTE_MS))
        )
        await conn.execute(
            insert(t.console_sessions).values(
                id_hash=_digest(sid), operator=operator, role=role, csrf=csrf, stamp=stamp, created_ms=ts, seen_ms=ts
            )
        )
    return sid, Session(operator, role, csrf)


async def load(engine: AsyncEngine, sid: str | None, admin_key: str) -> Session | None:
    """The live session for a cookie value, or None (unknown, expired or revoked)."""
    if not sid or len(sid) > 100:
        return None
    s, o = t.console_sessions.c, t.operators.c
    ts = now_ms()
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    s.id_hash,
                    s.operator,
                    s.role,
                    s.csrf,
                    s.stamp,
                    s.created_ms,
                    s.seen_ms,
                    o.role.label("current_role"),
                    o.auth_version,
                )
                .select_from(t.console_sessions.outerjoin(t.operators, o.name == s.operator))
                .where(s.id_hash == _digest(sid))
            )
        ).first()
    if row is None or row.seen_ms < ts - IDLE_MS or row.created_ms < ts - ABSOLUTE_MS:
        return None
    if row.operator == ADMIN_KEY_OPERATOR:
        if not admin_key or not secrets.compare_digest(row.stamp, admin_key_stamp(admin_key)):
            return None
        role = "admin"
    else:
        if row.auth_version is None or row.stamp != operator_stamp(row.auth_version):
            return None
        role = row.current_role
    if ts - row.seen_ms > TOUCH_EVERY_MS:
        async with engine.begin() as conn:
            await conn.execute(update(t.console_sessions).where(s.id_hash == row.id_hash).values(seen_ms=ts))
    return Session(row.operator, role, row.csrf)


async def end(engine: AsyncEngine, sid: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(t.console_sessions).where(t.console_sessions.c.id_hash == _digest(sid)))


def csrf_ok(session: Session, given: str | None) -> bool:
    if not given:
        return False
    return secrets.compare_digest(session.csrf.encode(), given.encode())
