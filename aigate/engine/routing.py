"""Choosing upstream platforms and keys, and moving on when one fails.

Candidates are the platforms serving the model, highest priority first and shuffled by
weight within a priority, then those of each fallback model; platforms that are out
(down, cooling, or every key out: see ``aigate.engine.health``) go behind the others.
Each attempt takes the platform's next healthy key. A retryable failure (429, 5xx,
timeout, connection error) moves to the next candidate after a jittered backoff (50 ms
doubling to 1 s, each wait drawn between half and all of it); a key refused with
401/403 is disabled and the call moves on too, so the other keys serve it. When the list
is exhausted it starts over, up to ``max_attempts`` in all. Other 4xx errors end the
call at once. Each attempt is counted by outcome in ``/metrics`` and traced as a child
span of the request when telemetry is on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aigate import metrics, telemetry
from aigate.clock import now_ms
from aigate.config.runtime import Snapshot
from aigate.engine.health import Board, board_of
from aigate.providers.base import Platform, UpstreamError

T = TypeVar("T")

MAX_ATTEMPTS = 3
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


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


# The health board (``aigate.engine.health``) holds cooldowns, failures and probes.
Cooldowns = Board


def cooldowns_of(services) -> Board:
    """The instance's view of platform and key health (shared through Redis when set)."""
    return board_of(services)


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
    out = [cooldowns.platform_out(p) for p in ordered]
    if not any(out):
        return ordered
    return [p for p, o in zip(ordered, out) if not o] + [p for p, o in zip(ordered, out) if o]


def candidates(
    snapshot: Snapshot, cooldowns: Cooldowns, model: str, fallback_models: list[str], names: list[str]
) -> list[tuple[Platform, str]]:
    out = [(p, model) for p in order(snapshot.platforms_for(model, names), cooldowns)]
    for fb in fallback_models:
        out += [(p, fb) for p in order(snapshot.platforms_for(fb), cooldowns)]
    return out


def _outcome(exc: UpstreamError) -> str:
    if exc.status in (401, 403):
        return "auth"
    if exc.status == 429:
        return "rate_limited"
    if exc.kind != "http":
        return exc.kind  # timeout | connect | protocol | config
    return "server_error" if exc.retryable else "client_error"


def jittered(backoff: float) -> float:
    return random.uniform(backoff / 2, backoff)


async def call_with_retries(
    cands: list[tuple[Platform, str]],
    call: Callable[[Platform, str], Awaitable[T]],
    trace: Trace,
    cooldowns: Board,
    max_attempts: int = MAX_ATTEMPTS,
) -> T:
    """Run ``call`` on the candidates until one succeeds; re-raises the last error.

    ``call`` receives the platform carrying the key chosen for this attempt
    (``platform.api_key``)."""
    if not cands:
        raise UpstreamError("no enabled platform serves this model", status=None, retryable=False, kind="config")
    backoff = BACKOFF_S
    attempts = max(max_attempts, len(cands))
    last: UpstreamError | None = None
    for n in range(attempts):
        platform, model = cands[n % len(cands)]
        platform = cooldowns.pick_key(platform)
        attempt = Attempt(platform, model, now_ms())
        trace.attempts.append(attempt)
        started = time.perf_counter()
        span = telemetry.start_attempt(platform, model, n)
        try:
            result = await call(platform, model)
        except UpstreamError as exc:
            attempt.error = last = exc
            outcome = _outcome(exc)
            metrics.child(metrics.UPSTREAM_ERRORS, platform.id, exc.kind).inc()
            metrics.child(metrics.UPSTREAM_ATTEMPTS, platform.id, model, outcome).inc()
            telemetry.end_attempt(span, outcome, exc)
            await cooldowns.failed(platform, exc)
            # a refused key is disabled; another key or platform may still serve the call
            key_refused = outcome == "auth" and (len(platform.api_keys) > 1 or len(cands) > 1)
            if not exc.retryable and not key_refused:
                raise
            if n + 1 < attempts:
                await asyncio.sleep(jittered(backoff))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        except BaseException as exc:  # cancelled (client gone) or a bug: close the span
            telemetry.end_attempt(span, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error")
            raise
        trace.ttfb_ms = int((time.perf_counter() - started) * 1000)
        metrics.child(metrics.UPSTREAM_ATTEMPTS, platform.id, model, "success").inc()
        telemetry.end_attempt(span, "success", result=result)
        cooldowns.succeeded(platform)
        return result
    assert last is not None
    raise last
