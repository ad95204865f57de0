"""Open streams per user (``rate_limits.max_concurrent_streams_per_user``).

A slot is taken before the stream starts and given back when its response has been sent
(finished, failed or the client went away). With Redis the slots of a user are a sorted
set shared by every instance; each slot is a lease (``LEASE_MS``) that its instance
renews while the stream is open, so the slots of an instance that died free themselves.
Without Redis each process counts its own open streams. A Redis outage fails open.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os

log = logging.getLogger("aigate.edge")

LEASE_MS = 30_000
RENEW_EVERY_S = 10

# KEYS[1]: the user's slots; ARGV: cap, lease ms, slot id. 1 when taken, 0 when full.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: slot sets; ARGV[1]: lease ms; ARGV[2..]: the slot id in each set.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""


class Slot:
    """One open stream's place. ``release`` (awaited, before the response's last bytes go
    out, so a client that starts its next stream at once finds the place free) and
    ``release_soon`` (from a ``finally``, never blocking) are idempotent."""

    def __init__(self, slots: StreamSlots, key: str, slot_id: str | None) -> None:
        self._slots, self._key, self._id = slots, key, slot_id
        self._released = False

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._id is None:
            self._slots._release_here(self._key)
        elif self._slots._held.pop(self._id, None) is not None:
            await self._slots._zrem(self._key, self._id)

    def release_soon(self) -> None:
        if self._released:
            return
        self._released = True
        if self._id is None:
            self._slots._release_here(self._key)
        elif self._slots._held.pop(self._id, None) is not None:
            task = asyncio.get_running_loop().create_task(self._slots._zrem(self._key, self._id))
            self._slots._pending.add(task)  # not awaited: a cancelled response must not block on Redis
            task.add_done_callback(self._slots._pending.discard)


class StreamSlots:
    def __init__(self, redis=None, prefix: str = "aigate:edge:streams:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._open: dict[str, int] = {}  # in-process: key -> open streams
        self._held: dict[str, str] = {}  # Redis: slot id -> key, renewed while open
        self._acquire = redis.register_script(_ACQUIRE) if redis is not None else None
        self._renew = redis.register_script(_RENEW) if redis is not None else None
        self._ids = itertools.count()
        self._me = os.urandom(6).hex()
        self._renewer: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    async def acquire(self, key: str, cap: int) -> Slot | None:
        """A slot when one was free, else None."""
        if self._acquire is None:
            if self._open.get(key, 0) >= cap:
                return None
            self._open[key] = self._open.get(key, 0) + 1
            return Slot(self, key, None)
        slot = f"{self._me}:{next(self._ids)}"
        try:
            taken = await self._acquire(keys=[self.prefix + key], args=[cap, LEASE_MS, slot])
        except Exception:
            log.warning("stream cap: Redis unavailable, admitting", exc_info=True)
            return Slot(self, "", slot)  # holds nothing: releasing it does nothing
        if not taken:
            return None
        self._held[slot] = self.prefix + key
        self._start_renewer()
        return Slot(self, self.prefix + key, slot)

    def _release_here(self, key: str) -> None:
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    async def _zrem(self, key: str, slot: str) -> None:
        try:
            await self.redis.zrem(key, slot)
        except Exception:  # the lease frees it
            log.warning("stream cap: releasing a slot failed; its lease will expire", exc_info=True)

    def _start_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name="stream-slots")

    async def _renew_loop(self) -> None:
        renew = self._renew
        assert renew is not None  # started only once a Redis slot is held
        while self._held:
            await asyncio.sleep(RENEW_EVERY_S)
            held = list(self._held.items())
            if not held:
                break
            try:
                await renew(keys=[k for _, k in held], args=[LEASE_MS, *(s for s, _ in held)])
            except Exception:
                log.warning("stream cap: renewing leases failed", exc_info=True)

    async def stop(self) -> None:
        tasks = [t for t in (self._renewer, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
