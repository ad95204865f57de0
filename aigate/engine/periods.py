"""Calendar arithmetic for limits and asset recovery (all UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

DAY_MS = 86_400_000
MINUTE_MS = 60_000


def period_key(period: str, now_ms: int) -> str:
    """The counter key of the limit period containing ``now_ms``, e.g. ``day:20261122``."""
    return _period_key(period, now_ms // MINUTE_MS)  # every period starts on a minute


@lru_cache(maxsize=64)
def _period_key(period: str, minute: int) -> str:
    dt = datetime.fromtimestamp(minute * 60, tz=UTC)
    if period == "minute":
        return "minute:" + dt.strftime("%Y%m%d%H%M")
    if period == "hour":
        return "hour:" + dt.strftime("%Y%m%d%H")
    if period == "day":
        return "day:" + dt.strftime("%Y%m%d")
    if period == "week":
        year, week, _ = dt.isocalendar()
        return f"week:{year}W{week:02d}"
    if period == "month":
        return "month:" + dt.strftime("%Y%m")
    raise ValueError(f"unknown period {period!r}")


def recovery_boundary(now_ms: int, period_days: int) -> int:
    """The most recent recovery boundary: every ``period_days`` days from the epoch, 00:00 UTC."""
    span = period_days * DAY_MS
    return now_ms // span * span
