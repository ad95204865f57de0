"""Operator accounts of the web console: a name, a role (``admin`` or ``viewer``) and an
argon2id password hash (argon2-cffi: memory-hard, salted, parameters stored in the hash).

``auth_version`` is bumped whenever the role or the password changes; sessions carry the
version they were made with, so such a change ends every session of that operator on
every instance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigate.clock import now_ms
from aigate.store import tables as t

ROLES = ("admin", "viewer")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters
# Verified when the name is unknown, so a miss costs as much as a wrong password.
_DUMMY = _hasher.hash("no such operator, but the same work")


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str
    auth_version: int


def check_fields(name: str | None = None, password: str | None = None, role: str | None = None) -> list[str]:
    """Problems as ``field: message``, the Admin API's error style."""
    errors = []
    if name is not None and not NAME.match(name):
        errors.append("name: must be 1-64 characters of letters, digits and _.@-")
    if password is not None and len(password) < MIN_PASSWORD:
        errors.append(f"password: must be at least {MIN_PASSWORD} characters")
    if role is not None and role not in ROLES:
        errors.append("role: must be 'admin' or 'viewer'")
    return errors


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_ok(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def get(conn: AsyncConnection, name: str) -> Operator | None:
    o = t.operators.c
    row = (await conn.execute(select(o.name, o.role, o.auth_version).where(o.name == name))).first()
    return Operator(row.name, row.role, row.auth_version) if row else None


async def authenticate(engine: AsyncEngine, name: str, password: str) -> Operator | None:
    o = t.operators.c
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.operators).where(o.name == name))).first()
    if row is None:
        password_ok(_DUMMY, password)
        return None
    if not password_ok(row.password_hash, password):
        return None
    return Operator(row.name, row.role, row.auth_version)


async def create(conn: AsyncConnection, name: str, password: str, role: str) -> Operator:
    ts = now_ms()
    await conn.execute(
        insert(t.operators).values(
            name=name, password_hash=hash_password(password), role=role, auth_version=1, created_ms=ts, updated_ms=ts
        )
    )
    return Operator(name, role, 1)


async def change(conn: AsyncConnection, name: str, *, password: str | None = None, role: str | None = None) -> None:
    """Set a new password and/or role; either one ends the operator's sessions."""
    values: dict = {"updated_ms": now_ms(), "auth_version": t.operators.c.auth_version + 1}
    if password is not None:
        values["password_hash"] = hash_password(password)
    if role is not None:
        values["role"] = role
    await conn.execute(update(t.operators).where(t.operators.c.name == name).values(**values))


async def admin_count(conn: AsyncConnection) -> int:
    o = t.operators.c
    return (await conn.execute(select(func.count()).where(o.role == "admin"))).scalar_one()
