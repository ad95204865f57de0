"""Choosing upstream platforms and moving on when one fails.

Candidates are the platforms serving the model, highest priority first and shuffled by
weight within a priority, then those of each fallback model. A retryable failure (429,
5xx, timeout, connection error) moves to the next candidate after a short backoff; when
the list is exhausted it starts over, up to ``max_attempts`` in all. Other 4xx errors
end the call at once. A platform that fails ``COOLDOWN_AFTER`` times in a row is put at
the back of the list for ``COOLDOWN_S`` seconds (per process), then tried again.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aigate import metrics
from aigate.clock import now_ms
from aigate.config.runtime import Snapshot
from aigate.providers.base import Platform, UpstreamError

T = TypeVar("T")

MAX_ATTEMPTS = 3
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0
COOLDOWN_AFTER = 3
COOLDOWN_S = 30.0


@dataclass(slots=True)
class Attempt:
    platform: Platform
    model: str
    started_ms: int
    error: UpstreamError | None = None


@dataclass(slots=True)
class Trace:
    """Every attempt of one call, for the usage log's retry_times / retry_at / channel."""

    attempts: list[Attempt] = field(default_factory=list)
    ttfb_ms: int = 0

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def retry_times(self) -> int:
        return max(len(self.attempts) - 1, 0)

    @property
    def retry_ms(self) -> int | None:
        return self.attempts[-1].started_ms if len(self.attempts) > 1 else None


class Cooldowns:
    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def cooling(self, platform_id: str) -> bool:
        until = self._until.get(platform_id)
        return until is not None and until > time.monotonic()

    def failed(self, platform_id: str) -> None:
        n = self._failures.get(platform_id, 0) + 1
        self._failures[platform_id] = n
        if n >= COOLDOWN_AFTER:
            self._until[platform_id] = time.monotonic() + COOLDOWN_S

    def succeeded(self, platform_id: str) -> None:
        if platform_id in self._failures:
            del self._failures[platform_id]
            self._until.pop(platform_id, None)


def cooldowns_of(services) -> Cooldowns:
    """Each instance keeps its own view of which platforms are failing."""
    if services.cooldowns is None:
        services.cooldowns = Cooldowns()
    return services.cooldowns


def _weighted_order(group: list[Platform]) -> list[Platform]:
    if len(group) < 2:
        return group
    # Efraimidis–Spirakis: sorting by u^(1/w) is weighted sampling without replacement.
    return sorted(group, key=lambda p: random.random() ** (1.0 / p.weight), reverse=True)


def order(platforms: list[Platform], cooldowns: Cooldowns) -> list[Platform]:
    """``platforms`` arrive sorted by priority (highest first)."""
    ordered: list[Platform] = []
    i = 0
    while i < len(platforms):
        j = i
        while j < len(platforms) and platforms[j].priority == platforms[i].priority:
            j += 1
        ordered += _weighted_order(platforms[i:j])
        i = j
    warm = [p for p in ordered if not cooldowns.cooling(p.id)]
    return warm + [p for p in ordered if cooldowns.cooling(p.id)]


def candidates(snapshot: Snapshot, cooldowns: Cooldowns, model: str, fallback_models: list[str],
               names: list[str]) -> list[tuple[Platform, str]]:
    out = [(p, model) for p in order(snapshot.platforms_for(model, names), cooldowns)]
    for fb in fallback_models:
        out += [(p, fb) for p in order(snapshot.platforms_for(fb), cooldowns)]
    return out


async def call_with_retries(
    cands: list[tuple[Platform, str]],
    call: Callable[[Platform, str], Awaitable[T]],
    trace: Trace,
    cooldowns: Cooldowns,
    max_attempts: int = MAX_ATTEMPTS,
) -> T:
    """Run ``call`` on the candidates until one succeeds; re-raises the last error."""
    if not cands:
        raise UpstreamError("no enabled platform serves this model", status=None, retryable=False, kind="config")
    backoff = BACKOFF_S
    attempts = max(max_attempts, len(cands))
    last: UpstreamError | None = None
    for n in range(attempts):
        platform, model = cands[n % len(cands)]
        attempt = Attempt(platform, model, now_ms())
        trace.attempts.append(attempt)
        started = time.perf_counter()
        try:
            result = await call(platform, model)
        except UpstreamError as exc:
            attempt.error = last = exc
            metrics.UPSTREAM_ERRORS.labels(platform.id, exc.kind).inc()
            if not exc.retryable:
                raise
            cooldowns.failed(platform.id)
            if n + 1 < attempts:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        trace.ttfb_ms = int((time.perf_counter() - started) * 1000)
        cooldowns.succeeded(platform.id)
        return result
    assert last is not None
    raise last
