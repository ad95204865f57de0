"""Hashing and comparing the secrets clients present."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_key(key: str) -> str:
    """SHA-256 hex digest: keys are long random strings, so a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:8]


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def new_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)
