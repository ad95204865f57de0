"""Relay token limits: requests per minute, tokens per minute, and a total spend limit.

* Windows are fixed calendar minutes (``now_ms // 60_000``), per token.
* rpm: a call is counted when it is admitted; the (rpm+1)-th call of a minute is refused.
* tpm: tokens are known only after a call, so a call is refused once the minute's
  finished calls have used ``tpm`` tokens (the call that crosses the line completes).
* spend: the total ``used_amount`` of the token's calls. Refused once the total reaches
  ``spend_limit`` (again, the call that crosses it completes). The running total is
  seeded from the usage log (``SELECT sum(used_amount) ... WHERE app_id, token_id`` —
  the log is the durable record, so nothing else has to be persisted) the first time a
  token with a spend limit is used, then kept up to date after every call.

Storage: with Redis configured the counters live there, so every instance sharing that
Redis enforces one limit (``INCR`` + ``EXPIRE`` for windows; ``INCRBYFLOAT`` for spend,
whose key expires after ``SPEND_IDLE_S`` without calls and is then re-seeded from the
log; a spend limit removed and re-added within that time misses the calls made without
it). Without Redis each process keeps its own windows and totals in memory (the SPEC
asks for Redis when more than one instance runs). A Redis outage fails open: calls are
admitted and a warning is logged, rather than the relay going down with the cache.

Tokens without limits cost nothing here: no Redis round trip, no dictionary entry.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.clock import now_ms
from aigate.config.runtime import RelayToken
from aigate.store import tables as t

log = logging.getLogger("aigate.relay")

WINDOW_MS = 60_000
WINDOW_TTL_S = 120  # a window key outlives its minute, then Redis drops it
SPEND_IDLE_S = 600

# Adds to the spend total only while it exists: a missing key is re-seeded from the log
# at the next admission instead of restarting from zero.
_ADD_SPEND = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str  # requests | tokens | spend
    message: str
    retry_after_s: int | None = None  # None: waiting does not help


class Limits(Protocol):
    async def admit(self, token: RelayToken) -> Refusal | None:
        """Called before a call of a token that ``has_limits``."""

    def tracks(self, token: RelayToken) -> bool:
        """Whether ``settle`` needs this token's calls (else their cost is not computed)."""

    async def settle(self, token: RelayToken, tokens: int, amount: Decimal) -> None:
        """Called after each recorded call of a tracked token, with its tokens and cost."""


def has_limits(token: RelayToken) -> bool:
    return bool(token.rpm or token.tpm or token.spend_limit is not None)


def _retry_after(minute: int) -> int:
    return max(1, -(-((minute + 1) * WINDOW_MS - now_ms()) // 1000))


def _rpm_refusal(token: RelayToken, minute: int) -> Refusal:
    return Refusal(
        "requests",
        f"Rate limit reached for relay token '{token.name}': {token.rpm} requests per minute. Try again shortly.",
        _retry_after(minute),
    )


def _tpm_refusal(token: RelayToken, minute: int) -> Refusal:
    return Refusal(
        "tokens",
        f"Rate limit reached for relay token '{token.name}': {token.tpm} tokens per minute. Try again shortly.",
        _retry_after(minute),
    )


def _spend_refusal(token: RelayToken, spent: Decimal) -> Refusal:
    assert token.spend_limit is not None  # only a token with a limit is refused for spend
    return Refusal(
        "spend",
        f"You exceeded your current quota: relay token '{token.name}' has spent "
        f"{spent.normalize():f} of its limit {Decimal(token.spend_limit).normalize():f}.",
    )


async def spent_in_log(engine: AsyncEngine, token: RelayToken) -> Decimal:
    """The token's total spend as the usage log records it (app_id leads an index)."""
    ul = t.usage_logs
    stmt = select(func.coalesce(func.sum(ul.c.used_amount), 0)).where(
        ul.c.app_id == token.app_id, ul.c.token_id == token.id
    )
    async with engine.connect() as conn:
        value = (await conn.execute(stmt)).scalar_one()
    return Decimal(str(value))


class MemoryLimits:
    """One process's windows and spend totals."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._windows: dict[int, list[int]] = {}  # token id -> [minute, requests, tokens]
        self._spent: dict[int, Decimal] = {}
        self._seeding: dict[int, Decimal] = {}  # spend settled while the seed query runs
        self._locks: dict[int, asyncio.Lock] = {}

    def _window(self, token_id: int, minute: int) -> list[int]:
        w = self._windows.get(token_id)
        if w is None or w[0] != minute:
            w = self._windows[token_id] = [minute, 0, 0]
        return w

    async def _total(self, token: RelayToken) -> Decimal:
        total = self._spent.get(token.id)
        if total is not None:
            return total
        async with self._locks.setdefault(token.id, asyncio.Lock()):  # one seed query per token
            total = self._spent.get(token.id)
            if total is None:
                self._seeding[token.id] = Decimal(0)
                try:
                    seeded = await spent_in_log(self.engine, token)
                finally:
                    early = self._seeding.pop(token.id)
                total = self._spent[token.id] = seeded + early
        return total

    async def admit(self, token: RelayToken) -> Refusal | None:
        minute = now_ms() // WINDOW_MS
        if token.rpm or token.tpm:
            w = self._window(token.id, minute)
            if token.rpm:
                if w[1] >= token.rpm:
                    return _rpm_refusal(token, minute)
                w[1] += 1
            if token.tpm and w[2] >= token.tpm:
                return _tpm_refusal(token, minute)
        if token.spend_limit is not None:
            try:
                spent = await self._total(token)
            except Exception:  # the database is down: admit rather than fail every call
                log.warning("relay spend total unavailable; admitting the call", exc_info=True)
                return None
            if spent >= token.spend_limit:
                return _spend_refusal(token, spent)
        return None

    def tracks(self, token: RelayToken) -> bool:
        # a total once seeded stays exact even while the token has no limit
        return bool(token.tpm) or token.id in self._spent or token.id in self._seeding

    async def settle(self, token: RelayToken, tokens: int, amount: Decimal) -> None:
        if token.tpm and tokens:
            self._window(token.id, now_ms() // WINDOW_MS)[2] += tokens
        if amount:
            if token.id in self._spent:
                self._spent[token.id] += amount
            elif token.id in self._seeding:
                self._seeding[token.id] += amount


class RedisLimits:
    """Windows and totals shared by every instance using this Redis."""

    def __init__(self, engine: AsyncEngine, redis: Any) -> None:
        self.engine = engine
        self.redis = redis
        self._add_spend = redis.register_script(_ADD_SPEND)

    @staticmethod
    def _keys(token_id: int, minute: int) -> tuple[str, str, str]:
        base = f"aigate:relay:{{{token_id}}}"  # one hash slot per token (Redis Cluster)
        return f"{base}:rpm:{minute}", f"{base}:tpm:{minute}", f"{base}:spend"

    async def _seed(self, token: RelayToken, key: str) -> Decimal:
        seeded = await spent_in_log(self.engine, token)
        # NX: another instance may have seeded (and added to) it meanwhile; theirs wins
        await self.redis.set(key, format(seeded, "f"), nx=True, ex=SPEND_IDLE_S)
        value = await self.redis.get(key)
        return Decimal(value.decode()) if value is not None else seeded

    async def admit(self, token: RelayToken) -> Refusal | None:
        minute = now_ms() // WINDOW_MS
        rpm_key, tpm_key, spend_key = self._keys(token.id, minute)
        try:
            pipe = self.redis.pipeline(transaction=False)
            if token.rpm:
                pipe.incr(rpm_key)
                pipe.expire(rpm_key, WINDOW_TTL_S)
            if token.tpm:
                pipe.get(tpm_key)
            if token.spend_limit is not None:
                pipe.get(spend_key)
            replies = iter(await pipe.execute())
            if token.rpm:
                requests = next(replies)
                next(replies)
                if requests > token.rpm:
                    return _rpm_refusal(token, minute)
            if token.tpm:
                used = next(replies)
                if used is not None and int(used) >= token.tpm:
                    return _tpm_refusal(token, minute)
            if token.spend_limit is not None:
                value = next(replies)
                spent = Decimal(value.decode()) if value is not None else await self._seed(token, spend_key)
                if spent >= token.spend_limit:
                    return _spend_refusal(token, spent)
        except Exception:  # Redis down: admit rather than fail every call
            log.warning("relay limits unavailable; admitting the call", exc_info=True)
        return None

    def tracks(self, token: RelayToken) -> bool:
        return bool(token.tpm) or token.spend_limit is not None

    async def settle(self, token: RelayToken, tokens: int, amount: Decimal) -> None:
        if not ((token.tpm and tokens) or (token.spend_limit is not None and amount)):
            return  # nothing to count: no round trip
        _, tpm_key, spend_key = self._keys(token.id, now_ms() // WINDOW_MS)
        try:
            pipe = self.redis.pipeline(transaction=False)
            if token.tpm and tokens:
                pipe.incrby(tpm_key, tokens)
                pipe.expire(tpm_key, WINDOW_TTL_S)
            if token.spend_limit is not None and amount:
                await self._add_spend(keys=[spend_key], args=[format(amount, "f"), SPEND_IDLE_S], client=pipe)
            await pipe.execute()
        except Exception:
            log.warning("relay limits unavailable; a call was not counted", exc_info=True)


def limits_of(services) -> Limits:
    if services.relay_limits is None:
        services.relay_limits = (
            RedisLimits(services.engine, services.redis)
            if services.redis is not None
            else MemoryLimits(services.engine)
        )
    return services.relay_limits
