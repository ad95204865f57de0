"""Who is calling: the one place that turns credentials into a tenant scope.

Every App API handler receives a ``Caller``; every query it makes is scoped by
``caller.app.id`` and ``caller.user_id``, so a handler cannot forget tenant scoping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jwt

from aigate import metrics
from aigate.auth.index import client_index
from aigate.auth.jwks import JwksCache, may_change
from aigate.auth.keys import hash_key, same_secret
from aigate.auth.tokens import verify_user_token
from aigate.auth.verify import audiences, unverified_parts, verify_jwt
from aigate.clock import now_ms
from aigate.config.runtime import AppRuntime, RelayToken, Snapshot
from aigate.errors import AppError, invalid, unauthorized

USER_ID = re.compile(r"^[A-Za-z0-9_.:@|-]{1,128}$")


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


def refuse(surface: str, message: str) -> AppError:
    metrics.UNAUTHENTICATED.labels(surface).inc()
    return unauthorized(message)


def check_user_id(user_id: str) -> str:
    if not USER_ID.match(user_id):
        raise invalid("user_id: must be 1-128 characters of letters, digits and _.:@|-")
    return user_id


def app_from_server_key(snapshot: Snapshot, authorization: str | None) -> AppRuntime:
    try:
        key = bearer(authorization)
    except AppError as exc:
        raise refuse("server", exc.message) from None
    found = snapshot.server_keys.get(hash_key(key))
    app = snapshot.apps.get(found.app_id) if found and found.enabled else None
    if app is None or not app.enabled:
        raise refuse("server", "invalid server key")
    return app


def caller_from_server_key(snapshot: Snapshot, authorization: str | None, user_id: str) -> Caller:
    app = app_from_server_key(snapshot, authorization)
    return Caller(app, check_user_id(user_id), True)


@dataclass(frozen=True, slots=True)
class UserToken:
    """A verified user token: who it names and when it was issued (None: no ``iat``)."""

    caller: Caller
    issued_at: float | None


async def caller_from_user_token(
    snapshot: Snapshot, authorization: str | None, jwks: JwksCache, *, may_fetch: bool = True
) -> UserToken:
    """An identity provider's token when its (issuer, audience) pair is configured by an
    app; else aigate's own HS256 token, whose ``app_id`` claim names the app."""
    try:
        token = bearer(authorization)
        header, claims = unverified_parts(token, "user token")
        iss = claims.get("iss")
        if isinstance(iss, str):
            index = client_index(snapshot)
            for aud in audiences(claims):
                found = index.issuers.get((iss, aud))
                if found is not None:
                    return await _provider_token(token, header, *found, jwks, may_fetch)
            if "app_id" not in claims:
                auds = ", ".join(repr(a) for a in audiences(claims)) or "none"
                raise unauthorized(f"invalid user token: no app accepts issuer {iss!r} with audience {auds}")
        return _own_token(snapshot, token, header, claims)
    except AppError as exc:
        if exc.status == 401:
            refusal = refuse("user", exc.message)
            if getattr(exc, "may_change", False):
                may_change(refusal)
            raise refusal from None
        raise


async def _provider_token(
    token: str, header: dict, app: AppRuntime, issuer, jwks: JwksCache, may_fetch: bool
) -> UserToken:
    claims = await verify_jwt(token, header, issuer, jwks, "user token", may_fetch=may_fetch)
    for name, expected in issuer.required_claims.items():
        if name not in claims:
            raise unauthorized(f"invalid user token: missing required claim '{name}'")
        if claims[name] != expected:
            raise unauthorized(f"invalid user token: claim '{name}' must be {expected!r}")
    subject = claims.get(issuer.user_claim)
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(subject, str) or not subject:
        raise unauthorized(f"invalid user token: missing claim '{issuer.user_claim}'")
    user_id = issuer.user_prefix + subject
    if not USER_ID.match(user_id):
        raise unauthorized(f"invalid user token: claim '{issuer.user_claim}' is not a valid user id")
    return UserToken(Caller(app, user_id, False), _issued_at(claims))


def _own_token(snapshot: Snapshot, token: str, header: dict, claims: dict) -> UserToken:
    app_id = claims.get("app_id")
    app = snapshot.apps.get(app_id) if isinstance(app_id, str) else None
    if app is None or not app.enabled:
        raise unauthorized("invalid user token")
    if header.get("alg") != "HS256":
        raise unauthorized(f"invalid user token: algorithm {header.get('alg')!r} is not accepted (HS256)")
    now = now_ms()
    previous = [p.secret for p in app.client.previous_user_token_secrets if p.expires_at.timestamp() * 1000 > now]
    try:
        claims = verify_user_token(token, app.user_token_secret, previous)
    except jwt.ExpiredSignatureError:
        raise unauthorized("user token expired") from None
    except jwt.ImmatureSignatureError:
        raise may_change(unauthorized("user token is not yet valid (nbf or iat in the future)")) from None
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"invalid user token: missing claim '{exc.claim}'") from None
    except jwt.PyJWTError:
        raise unauthorized("invalid user token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID.match(sub):
        raise unauthorized("invalid user token: bad sub claim")
    return UserToken(Caller(app, sub, False), _issued_at(claims))


def _issued_at(claims: dict) -> float | None:
    iat = claims.get("iat")
    return float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None


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
