"""Verifying a JWT against one configured issuer (an identity provider or an attestation
service). Everything that decides how a token is checked comes from the configuration:
the algorithms, the key source (its JWKS URL or its secret), the issuer and audience.
The token only names its algorithm (which must be one of the configured ones) and its
``kid``; ``jku``, ``x5u`` and ``jwk`` headers are ignored."""

from __future__ import annotations

import jwt

from aigate.auth.jwks import JwksCache, may_change
from aigate.config.schema import TokenIssuerCfg
from aigate.errors import unauthorized

LEEWAY_S = 60


def unverified_parts(token: str, what: str) -> tuple[dict, dict]:
    """The header and claims, read without checking anything, to pick a verifier."""
    try:
        parts = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})  # one parse for both
    except jwt.PyJWTError:
        raise unauthorized(f"invalid {what}: not a well-formed JWT") from None
    header, claims = parts["header"], parts["payload"]
    if not isinstance(claims, dict) or not isinstance(header, dict):
        raise unauthorized(f"invalid {what}: its claims are not a JSON object")
    return header, claims


def audiences(claims: dict) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


async def verify_jwt(
    token: str, header: dict, cfg: TokenIssuerCfg, jwks: JwksCache, what: str, *, may_fetch: bool = True
) -> dict:
    """The verified claims; 401 ``unauthorized`` naming the problem otherwise."""
    alg = header.get("alg")
    if alg not in cfg.allowed_algorithms:
        raise unauthorized(
            f"invalid {what}: algorithm {alg!r} is not accepted for issuer '{cfg.issuer}' "
            f"(accepted: {', '.join(cfg.allowed_algorithms)})"
        )
    if cfg.secret is not None:
        key = cfg.secret
    else:
        assert cfg.jwks_url is not None  # the schema requires exactly one of secret and jwks_url
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        key = (await jwks.key(cfg.jwks_url, kid, alg, may_fetch=may_fetch, allow_private=cfg.allow_private)).key
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=cfg.audience,
            issuer=cfg.issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized(f"{what} expired") from None
    except jwt.ImmatureSignatureError:
        raise may_change(unauthorized(f"{what} is not yet valid (nbf or iat in the future)")) from None
    except jwt.InvalidAudienceError:
        raise unauthorized(f"invalid {what}: wrong audience (expected '{cfg.audience}')") from None
    except jwt.InvalidIssuerError:
        raise unauthorized(f"invalid {what}: wrong issuer (expected '{cfg.issuer}')") from None
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"invalid {what}: missing claim '{exc.claim}'") from None
    except jwt.InvalidSignatureError:
        raise unauthorized(f"invalid {what}: bad signature") from None
    except jwt.PyJWTError as exc:
        raise unauthorized(f"invalid {what}: {exc}") from None
