"""Sign-in attempts per client IP, counted before any password is hashed (argon2 is
deliberately slow: unlimited attempts would be both a guessing and a CPU-exhaustion
attack). A fixed window in Redis when configured (shared by every instance), else in
this process."""

from __future__ import annotations

import time

ATTEMPTS = 10
WINDOW_S = 60


class SigninLimiter:
    def __init__(self, redis=None, attempts: int = ATTEMPTS, window_s: int = WINDOW_S) -> None:
        self.redis = redis
        self.attempts = attempts
        self.window_s = window_s
        self._local: dict[str, tuple[int, int]] = {}  # ip -> (window, count)

    async def allow(self, ip: str) -> bool:
        window = int(time.time()) // self.window_s
        if self.redis is not None:
            key = f"aigate:signin:{ip}:{window}"
            count = await self.redis.incr(key)
            if count == 1:
                await self.redis.expire(key, self.window_s * 2)
            return count <= self.attempts
        if len(self._local) > 100_000:
            self._local.clear()
        seen_window, count = self._local.get(ip, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._local[ip] = (window, count)
        return count <= self.attempts
