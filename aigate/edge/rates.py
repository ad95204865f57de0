"""Request rates per key over a sliding minute: at most ``limit`` admissions in any 60 s.

A sliding log (one timestamp per admitted request) rather than fixed minute windows, so
"30 per minute" never lets 60 through across a window boundary. Several keys are checked
together and a request is counted against all of them only when all admit it.

With Redis the log is a sorted set per key, checked and written by one Lua script
(atomic across instances; Redis's own clock, so instances' clocks do not matter).
Without Redis each process keeps its own logs. A Redis outage fails open (admitted, and
a warning is logged) rather than taking the App API down with the cache.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import deque

log = logging.getLogger("aigate.edge")

WINDOW_MS = 60_000

# KEYS: the keys; ARGV[1]: window ms; ARGV[2]: a unique member; ARGV[3..]: each key's limit.
# Returns {0, 0} when admitted, else {ms until the fullest key frees a place, its index}.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait, which = 0, 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local left = math.max(1, tonumber(oldest[2]) + window - now)
    if left > wait then wait, which = left, i - 1 end
  end
end
if wait > 0 then return {wait, which} end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, window)
end
return {0, 0}
"""


class RateLimiter:
    def __init__(self, redis=None, prefix: str = "aigate:edge:rate:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._logs: dict[str, deque[int]] = {}
        self._script = redis.register_script(_HIT) if redis is not None else None
        self._ids = itertools.count()
        self._me = os.urandom(6).hex()

    async def hit(self, limits: list[tuple[str, int]]) -> tuple[int, int]:
        """Admit one request against every (key, limit): ``(0, 0)``, or the ms to wait and
        the index of the limit that refused."""
        if not limits:
            return 0, 0
        if self._script is not None:
            try:
                member = f"{self._me}:{next(self._ids)}"
                keys = [self.prefix + key for key, _ in limits]
                wait, which = await self._script(keys=keys, args=[WINDOW_MS, member, *(n for _, n in limits)])
                return int(wait), int(which)
            except Exception:
                log.warning("edge rate limit: Redis unavailable, admitting", exc_info=True)
                return 0, 0
        return self._hit_here(limits)

    def _hit_here(self, limits: list[tuple[str, int]]) -> tuple[int, int]:
        now = int(time.monotonic() * 1000)
        if len(self._logs) > 50_000:
            self._logs = {k: v for k, v in self._logs.items() if v and v[-1] > now - WINDOW_MS}
        wait, which = 0, 0
        logs = []
        for i, (key, limit) in enumerate(limits):
            entries = self._logs.setdefault(key, deque())
            while entries and entries[0] <= now - WINDOW_MS:
                entries.popleft()
            if len(entries) >= limit:
                left = max(1, entries[0] + WINDOW_MS - now)
                if left > wait:
                    wait, which = left, i
            logs.append(entries)
        if wait:
            return wait, which
        for entries in logs:
            entries.append(now)
        return 0, 0
