"""App attestation (SPEC §10): a JWT from an attestation service (Firebase App Check, or
any service with a JWKS) in a configured header, proving the call comes from the app.

* ``required: true``: a call with a user token and without a valid attestation token is
  refused with 401 ``unauthorized`` naming the header.
* ``required: false, monitor: true``: nothing is refused; what would have been refused is
  counted (``aigate_attestation_failures_total{app, mode="monitor"}``) and logged.
* ``consume_once: true``: each token's ``jti`` is accepted once (a token without one is
  refused). The set of seen ``jti``s is shared by every instance through Redis (``SET NX``
  until the token's ``exp`` plus the clock leeway), in-process without Redis.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from aigate.auth.jwks import JwksCache
from aigate.auth.verify import LEEWAY_S, unverified_parts, verify_jwt
from aigate.config.runtime import AppRuntime
from aigate.errors import AppError, unauthorized

log = logging.getLogger("aigate.auth")

FAILURES = Counter(
    "aigate_attestation_failures_total",
    "Calls whose attestation token was missing or invalid",
    ["app", "mode"],
)
MAX_JTI_CHARS = 256


class ReplayGuard:
    """Remembers attestation token ids until their expiry."""

    def __init__(self, redis=None) -> None:
        self.redis = redis
        self._seen: dict[str, float] = {}

    async def first_use(self, app_id: str, jti: str, exp: float) -> bool:
        until = max(exp, time.time()) + LEEWAY_S
        key = f"aigate:attest:{app_id}:{jti}"
        if self.redis is not None:
            try:
                return bool(await self.redis.set(key, 1, nx=True, exat=int(until) + 1))
            except Exception:
                log.warning("attestation replay check: Redis unavailable, checking in-process", exc_info=True)
        return self._first_use_here(key, until)

    def _first_use_here(self, key: str, until: float) -> bool:
        now = time.time()
        if len(self._seen) > 10_000:  # forget what has expired, now and then
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        if self._seen.get(key, 0) > now:
            return False
        self._seen[key] = until
        return True


async def check_attestation(
    app: AppRuntime, headers, jwks: JwksCache, replay: ReplayGuard, *, may_fetch: bool = True
) -> None:
    cfg = app.client.attestation
    if cfg is None or not (cfg.required or cfg.monitor):
        return
    try:
        await _verify(cfg, headers.get(cfg.header), app.id, jwks, replay, may_fetch)
    except AppError as exc:
        mode = "enforced" if cfg.required else "monitor"
        FAILURES.labels(app.id, mode).inc()
        if cfg.required:
            raise
        log.info("attestation would be refused (monitor mode): %s", exc.message, extra={"app_id": app.id})


async def _verify(cfg, token: str | None, app_id: str, jwks: JwksCache, replay: ReplayGuard, may_fetch: bool) -> None:
    what = f"attestation token ({cfg.header} header)"
    if not token:
        raise unauthorized(f"missing {what}")
    header, _ = unverified_parts(token, what)
    try:
        claims = await verify_jwt(token, header, cfg, jwks, what, may_fetch=may_fetch)
    except AppError as exc:
        if exc.status == 401 and what not in exc.message:  # the key look-up does not know the header
            raise unauthorized(f"invalid {what}: {exc.message}") from None
        raise
    if cfg.consume_once:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS:
            raise unauthorized(f"invalid {what}: missing claim 'jti' (needed to use it once)")
        if not await replay.first_use(app_id, jti, float(claims["exp"])):
            raise unauthorized(f"invalid {what}: already used")
