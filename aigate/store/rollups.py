"""The rollup grains, defined once: which sums the writer keeps per time bucket.

Every logged call is added to (in its own transaction on PostgreSQL, in a batch after the
writer's commit on SQLite: ``aigate.store.sinks``):

* the dashboard series (``DASHBOARD``): per minute by (group, model, strategy); per hour
  and per day by series, for its group and for all groups (``"*"``), in total, per model
  and per strategy;
* the log counts behind the log search's totals and facets (``usage_log_counts``), per
  ``LOG_COUNT_GRAINS``;
* each end user's daily totals (``USER_DAILY``).

The writer sums a batch in memory first (``aggregate``), so it sends one upsert per
(table, key) however many rows share it. A "row" may stand for several log rows already
summed (SQLite sums them in SQL first): its delta carries their count and sums. The
dashboard reads, the log search and log retention take their grains and tables from
here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Table

from aigate.store import tables as t

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

SUMS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "used_amount", "ttfb_ms_sum")
USER_SUMS = SUMS[:-1]  # no latency per user
SERIES = ("total", "model", "strategy")  # the ``dim`` of the hourly and daily series
LOG_COUNT_GRAINS = (HOUR_MS, DAY_MS)
LOG_COUNT_KEYS = ("grain_ms", "bucket_ms", "app_id", "model", "channel", "token_name", "code")

Row = dict[str, Any]


def bucket(ms: int, grain_ms: int) -> int:
    return ms // grain_ms * grain_ms


def _strategy(row: Row) -> str:
    return (row.get("metadata") or {}).get("strategy", "")


def _minute_keys(row: Row) -> Iterable[tuple]:
    yield (bucket(row["created_ms"], MINUTE_MS), row["app_id"], row["model"], _strategy(row))


def _series_keys(grain_ms: int) -> Callable[[Row], Iterable[tuple]]:
    def keys(row: Row) -> Iterable[tuple]:
        at = bucket(row["created_ms"], grain_ms)
        values = {"total": "", "model": row["model"], "strategy": _strategy(row)}
        for group in (row["app_id"], "*"):
            for dim in SERIES:
                yield (group, dim, at, values[dim])

    return keys


def _user_keys(row: Row) -> Iterable[tuple]:
    yield (row["app_id"], row.get("user", ""), bucket(row["created_ms"], DAY_MS))


@dataclass(frozen=True)
class Rollup:
    """One table of sums: its key columns, how a log row maps to its keys, its sums."""

    table: Table
    key_columns: tuple[str, ...]
    keys: Callable[[Row], Iterable[tuple]]
    sums: tuple[str, ...] = SUMS


DASHBOARD = {
    MINUTE_MS: Rollup(t.usage_rollups, ("bucket_ms", "app_id", "model", "strategy"), _minute_keys),
    HOUR_MS: Rollup(t.usage_rollups_hourly, ("app_id", "dim", "bucket_ms", "value"), _series_keys(HOUR_MS)),
    DAY_MS: Rollup(t.usage_rollups_daily, ("app_id", "dim", "bucket_ms", "value"), _series_keys(DAY_MS)),
}
USER_DAILY = Rollup(t.user_usage_daily, ("app_id", "user_id", "day_ms"), _user_keys, USER_SUMS)
ROLLUPS = (*DASHBOARD.values(), USER_DAILY)


def deltas(rows: Iterable[Row]) -> list[tuple]:
    """What each log row adds to a key's sums, in ``SUMS`` order (``USER_SUMS`` is its
    prefix): computed once per row, whatever the number of keys it feeds."""
    return [
        (
            1,
            0 if row["code"] == 200 else 1,
            row.get("input_tokens", 0),
            row.get("output_tokens", 0),
            row.get("total_tokens", 0),
            Decimal(row.get("used_amount", 0)),
            row.get("ttfb_ms", 0),
        )
        for row in rows
    ]


def aggregate(rollup: Rollup, rows: list[Row], row_deltas: list[tuple]) -> list[Row]:
    """The batch's sums for one rollup, one row per key, in key order (a fixed order
    avoids deadlocks between instances)."""
    width = len(rollup.sums)
    by_key: dict[tuple, list] = {}
    for row, delta in zip(rows, row_deltas, strict=True):
        for key in rollup.keys(row):
            acc = by_key.get(key)
            if acc is None:
                by_key[key] = list(delta[:width])
            else:
                for i in range(width):
                    acc[i] += delta[i]
    names = rollup.key_columns + rollup.sums
    return [dict(zip(names, k + tuple(v), strict=True)) for k, v in sorted(by_key.items())]


def log_counts(rows: Iterable[Row], row_deltas: list[tuple]) -> list[Row]:
    """The batch's additions to ``usage_log_counts``, one row per key, in key order."""
    counts: dict[tuple, int] = {}
    for row, delta in zip(rows, row_deltas, strict=True):
        dims = (row["app_id"], row["model"], row.get("channel", 0), row.get("token_name", ""), row["code"])
        for grain in LOG_COUNT_GRAINS:
            key = (grain, bucket(row["created_ms"], grain), *dims)
            counts[key] = counts.get(key, 0) + delta[0]
    return [{**dict(zip(LOG_COUNT_KEYS, k, strict=True)), "logs": n} for k, n in sorted(counts.items())]
