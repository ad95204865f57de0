"""User tokens aigate and app servers mint: HS256 JWTs signed with the app's
``user_token_secret`` (or, until they expire, one of its ``previous_user_token_secrets``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

import jwt

ALGORITHM = "HS256"


def mint_user_token(app_id: str, user_id: str, secret: str, ttl_seconds: int = 3600) -> tuple[str, int]:
    """Return the token and its expiry (seconds since the epoch). ``iat`` lets a revocation
    refuse the tokens issued before it; ``jti`` names the token."""
    now = int(time.time())
    exp = now + ttl_seconds
    claims = {"app_id": app_id, "sub": user_id, "iat": now, "exp": exp, "jti": secrets.token_urlsafe(12)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), exp


def verify_user_token(token: str, secret: str, previous: Iterable[str] = ()) -> dict:
    """Raises jwt.PyJWTError when the signature, expiry or required claims are wrong. A
    signature that fails with ``secret`` is tried with each of ``previous`` (still valid)."""
    for candidate in (secret, *previous):
        try:
            return jwt.decode(
                token,
                candidate,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "app_id"]},
            )
        except jwt.InvalidSignatureError:
            continue
    raise jwt.InvalidSignatureError("Signature verification failed")
