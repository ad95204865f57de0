"""The checks every App API call passes before any metering, in this order:

1. the caller's IP (``client_ip``);
2. its credentials: a user token (aigate's HS256 or an identity provider's, see
   ``auth.caller``), not revoked, with the app's attestation token when required; or the
   app server key;
3. a failed authentication counts against ``server.unauthenticated_ip_rpm`` for that IP.
   A user token refused for a reason that cannot change (bad signature, malformed,
   expired, unknown issuer, ...) is remembered for a minute per configuration version,
   so the same bad token sent again is refused with a dictionary look-up instead of
   being parsed and verified again (floods mostly repeat one token).
   Once an IP is over it, its failures get 429 ``limit_exceeded`` and the IP is marked
   in memory until its window frees a place: while marked, its requests are checked
   without any JWKS fetch or shared-counter round trip, so a flood costs little. A
   valid token is never refused by this cap (it is only consulted after a failure);
4. for user-token calls, the app's ``rate_limits``: ``per_user_rpm``, ``per_ip_rpm``
   (429 ``limit_exceeded`` with ``Retry-After``) and, for streams,
   ``max_concurrent_streams_per_user``.

One ``EdgeGate`` per process, kept in ``services.edge``.
"""

from __future__ import annotations

import hashlib
import time

from starlette.requests import Request

from aigate.auth.attestation import ReplayGuard, check_attestation
from aigate.auth.caller import Caller, UserToken, caller_from_server_key, caller_from_user_token, refuse
from aigate.auth.jwks import JwksCache
from aigate.auth.revocations import Revocations
from aigate.edge.client_ip import ClientIp
from aigate.edge.rates import RateLimiter
from aigate.edge.streams import Slot, StreamSlots
from aigate.errors import AppError

MAX_BLOCKED_IPS = 100_000
MAX_REMEMBERED_REFUSALS = 10_000
REMEMBER_REFUSAL_S = 60


def _limit_error(message: str, wait_ms: int) -> AppError:
    return AppError("limit_exceeded", message, headers={"Retry-After": str(max(1, -(-wait_ms // 1000)))})


class EdgeGate:
    def __init__(self, services) -> None:
        self.services = services
        server = services.config.server
        self.client_ip_of = ClientIp(server.trusted_proxies)
        self.failure_cap = server.unauthenticated_ip_rpm
        self.jwks = JwksCache(services.http)
        self.revocations = Revocations(services.engine, services.redis)
        self.replay = ReplayGuard(services.redis)
        self.rates = RateLimiter(services.redis)
        self.failures = RateLimiter(services.redis, prefix="aigate:edge:authfail:")
        self.streams = StreamSlots(services.redis)
        self._blocked: dict[str, float] = {}  # IP -> monotonic time its failure window frees
        self._refused: dict[bytes, tuple[int, float, str]] = {}  # hash(Authorization) -> (version, until, message)

    async def start(self) -> None:
        await self.revocations.start()

    async def stop(self) -> None:
        await self.revocations.stop()
        await self.streams.stop()
        await self.jwks.close()

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        return self.client_ip_of(peer, request.headers.get("x-forwarded-for"))

    async def user_caller(self, request: Request) -> Caller:
        ip = self.client_ip(request)
        flooding = self._blocked_for(ip)
        authorization = request.headers.get("authorization")
        try:
            token = await self._user_token(authorization, may_fetch=flooding is None)
            caller = token.caller
            if self.revocations.refuses(caller.app.id, caller.user_id, token.issued_at):
                raise refuse("user", "user token revoked: sign in again")
            await check_attestation(caller.app, request.headers, self.jwks, self.replay, may_fetch=flooding is None)
        except AppError as exc:
            if exc.status != 401:
                raise
            raise await self._failed(ip, exc, flooding) from None
        await self._rate_limits(caller, ip)
        return caller

    async def server_caller(self, request: Request) -> Caller:
        try:
            return caller_from_server_key(
                self.services.snapshot, request.headers.get("authorization"), request.path_params["user_id"]
            )
        except AppError as exc:
            if exc.status != 401:
                raise
            ip = self.client_ip(request)  # a key look-up is cheap: the address matters only on failure
            raise await self._failed(ip, exc, self._blocked_for(ip)) from None

    async def open_stream(self, caller: Caller) -> Slot | None:
        """Take a stream slot of the caller's user (None: the app has no cap)."""
        cap = caller.app.client.rate_limits.max_concurrent_streams_per_user
        if cap is None or caller.from_appserver:
            return None
        slot = await self.streams.acquire(f"{caller.app.id}:{caller.user_id}", cap)
        if slot is None:
            raise AppError(
                "limit_exceeded",
                f"rate_limits.max_concurrent_streams_per_user: {cap} streams of this user are open already",
                headers={"Retry-After": "1"},
            )
        return slot

    # --- internals

    async def _user_token(self, authorization: str | None, *, may_fetch: bool) -> UserToken:
        snapshot = self.services.snapshot
        key = hashlib.blake2b((authorization or "").encode(), digest_size=16).digest()  # bounded memory
        known = self._refused.get(key)
        if known is not None and known[0] == snapshot.version and known[1] > time.monotonic():
            raise refuse("user", known[2])
        try:
            return await caller_from_user_token(snapshot, authorization, self.jwks, may_fetch=may_fetch)
        except AppError as exc:
            if exc.status == 401 and not getattr(exc, "may_change", False):
                if len(self._refused) >= MAX_REMEMBERED_REFUSALS:
                    self._refused.clear()
                self._refused[key] = (snapshot.version, time.monotonic() + REMEMBER_REFUSAL_S, exc.message)
            raise

    def _blocked_for(self, ip: str) -> float | None:
        until = self._blocked.get(ip)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[ip]
            return None
        return left

    async def _failed(self, ip: str, refusal: AppError, flooding: float | None) -> AppError:
        if not self.failure_cap:
            return refusal
        if flooding is not None:
            return self._flood_error(int(flooding * 1000))
        wait_ms, _ = await self.failures.hit([(ip, self.failure_cap)])
        if not wait_ms:
            return refusal
        if len(self._blocked) >= MAX_BLOCKED_IPS:
            self._blocked.clear()
        self._blocked[ip] = time.monotonic() + wait_ms / 1000
        return self._flood_error(wait_ms)

    def _flood_error(self, wait_ms: int) -> AppError:
        return _limit_error(
            f"server.unauthenticated_ip_rpm: more than {self.failure_cap} failed authentications "
            "from this address in a minute; try again later",
            wait_ms,
        )

    async def _rate_limits(self, caller: Caller, ip: str) -> None:
        limits = caller.app.client.rate_limits
        checks, names = [], []
        if limits.per_user_rpm:
            checks.append((f"user:{caller.app.id}:{caller.user_id}", limits.per_user_rpm))
            names.append(f"per_user_rpm: {limits.per_user_rpm} requests a minute for this user")
        if limits.per_ip_rpm:
            checks.append((f"ip:{caller.app.id}:{ip}", limits.per_ip_rpm))
            names.append(f"per_ip_rpm: {limits.per_ip_rpm} requests a minute from this address")
        if not checks:
            return
        wait_ms, which = await self.rates.hit(checks)
        if wait_ms:
            raise _limit_error(f"rate_limits.{names[which]}; try again later", wait_ms)


async def start_edge(services) -> None:
    gate = EdgeGate(services)
    await gate.start()
    services.edge = gate
    services.stoppers.append(gate.stop)


def edge_of(services) -> EdgeGate:
    assert services.edge is not None, "start_edge() runs at start-up"
    return services.edge
