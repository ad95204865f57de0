"""Who is calling: the one place that turns credentials into a tenant scope.

Every App API handler receives a ``Caller``; every query it makes is scoped by
``caller.app.id`` and ``caller.user_id``, so a handler cannot forget tenant scoping.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import jwt

from aigate import metrics
from aigate.auth.keys import hash_key, same_secret
from aigate.auth.tokens import unverified_app_id, verify_user_token
from aigate.config.runtime import AppRuntime, RelayToken, Snapshot
from aigate.errors import AppError, invalid, unauthorized

USER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Caller:
    app: AppRuntime
    user_id: str
    from_appserver: bool


def bearer(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("missing Authorization header")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("Authorization header must be 'Bearer <token>'")
    return value.strip()


def _refuse(surface: str, message: str) -> AppError:
    metrics.UNAUTHENTICATED.labels(surface).inc()
    return unauthorized(message)


def check_user_id(user_id: str) -> str:
    if not USER_ID.match(user_id):
        raise invalid("user_id: must be 1-64 characters of letters, digits and _.:-")
    return user_id


def app_from_server_key(snapshot: Snapshot, authorization: str | None) -> AppRuntime:
    try:
        key = bearer(authorization)
    except AppError as exc:
        raise _refuse("server", exc.message) from None
    found = snapshot.server_keys.get(hash_key(key))
    app = snapshot.apps.get(found.app_id) if found and found.enabled else None
    if app is None or not app.enabled:
        raise _refuse("server", "invalid server key")
    return app


def caller_from_server_key(snapshot: Snapshot, authorization: str | None, user_id: str) -> Caller:
    app = app_from_server_key(snapshot, authorization)
    return Caller(app, check_user_id(user_id), True)


def caller_from_user_token(snapshot: Snapshot, authorization: str | None) -> Caller:
    try:
        token = bearer(authorization)
    except AppError as exc:
        raise _refuse("user", exc.message) from None
    app = snapshot.apps.get(unverified_app_id(token) or "")
    if app is None or not app.enabled:
        raise _refuse("user", "invalid user token")
    try:
        claims = verify_user_token(token, app.user_token_secret)
    except jwt.ExpiredSignatureError:
        raise _refuse("user", "user token expired") from None
    except jwt.PyJWTError:
        raise _refuse("user", "invalid user token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID.match(sub):
        raise _refuse("user", "invalid user token: bad sub claim")
    return Caller(app, sub, False)


def admin_ok(admin_key: str, authorization: str | None) -> bool:
    if not admin_key or not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and same_secret(value.strip(), admin_key)


def relay_token(snapshot: Snapshot, key: str) -> RelayToken | None:
    token = snapshot.relay_tokens.get(hash_key(key))
    if token is None or not token.enabled:
        return None
    app = snapshot.apps.get(token.app_id)
    return token if app is not None and app.enabled else None
