"""User tokens: HS256 JWTs signed with the app's ``user_token_secret``."""
from __future__ import annotations

import time

import jwt

ALGORITHM = "HS256"


def mint_user_token(app_id: str, user_id: str, secret: str, ttl_seconds: int = 3600) -> tuple[str, int]:
    """Return the token and its expiry (seconds since the epoch)."""
    exp = int(time.time()) + ttl_seconds
    token = jwt.encode({"app_id": app_id, "sub": user_id, "exp": exp}, secret, algorithm=ALGORITHM)
    return token, exp


def unverified_app_id(token: str) -> str | None:
    """Which app a token claims to be for, so its secret can be looked up; verified next."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    app_id = claims.get("app_id")
    return app_id if isinstance(app_id, str) else None


def verify_user_token(token: str, secret: str) -> dict:
    """Raises jwt.PyJWTError when the signature, expiry or required claims are wrong."""
    return jwt.decode(
        token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "app_id"]}
    )
