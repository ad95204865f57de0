"""Admin API: the usage dashboard, summed from the rollups (never from the log itself).

``GET /api/dashboard?group=&start_timestamp=&end_timestamp=&timespan=minute|hour|day``

* range ``[start_timestamp, end_timestamp)`` in ms, default the last 24 hours (only a start:
  up to now; only an end: the 24 hours before it); ``timespan`` defaults to ``hour``;
* buckets are aligned to UTC minutes, hours or days; a bucket sums the rollup minutes
  whose start lies in the range (minute precision), so the first bucket may be partial;
* whole hours are read from ``usage_rollups_hourly`` (one pre-summed series per group,
  and for all groups, in total, per model and per strategy), whole UTC days of a
  dashboard by day from ``usage_rollups_daily`` (the same series per day), and only the
  partial hours at the edges (or everything, for minutes) from the per-minute
  ``usage_rollups``;
* at most 10,080 buckets per request (a week of minutes).

Response ``data`` (columnar: every array is aligned with ``timestamps``, zeros included)::

    {"group": "", "timespan": "hour", "start_timestamp": ms, "end_timestamp": ms,
     "timestamps": [<bucket start ms>, ...],
     "totals": {<field>: number, ...},
     "series": {<field>: [number per bucket], ...},
     "by_model": [{"model": "...", "totals": {...}, "series": {...}}, ...],   # most requests first
     "by_strategy": [{"strategy": "...", "totals": {...}, "series": {...}}, ...]}

``<field>``: requests, errors (code != 200), input_tokens, output_tokens, total_tokens,
used_amount, avg_ttfb_milliseconds (ttfb sum / requests, 0 without requests).
``strategy`` is "" for calls without one (the relay); without a group filter, strategies
of the same name in different groups are summed together.
"""

from __future__ import annotations

import asyncio
from operator import add
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BeforeValidator, Field
from sqlalchemy import (
    CompoundSelect,
    Float,
    Select,
    String,
    and_,
    cast,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.api.admin.logs import Millis, blank_to_none, json_response, log_reader, no_nul
from aigate.clock import now_ms
from aigate.store import rollups
from aigate.store import tables as t
from aigate.store.rollups import DAY_MS, HOUR_MS, MINUTE_MS
from aigate.store.sinks import current_rollups

SPANS = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}
DEFAULT_RANGE_MS = 86_400_000
MAX_BUCKETS = 10_080  # a week of minutes

SUMS = rollups.SUMS
DIMS = rollups.SERIES

router = APIRouter(tags=["dashboard"])

M = t.usage_rollups.c
Columns = list[list]  # one list per SUMS field, one slot per bucket


def _pieces(start: int, end: int, span: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The whole hours of ``[start, end)`` (read from the hourly series) and the ranges
    left to the per-minute rollups."""
    h1 = -(-start // HOUR_MS) * HOUR_MS
    h2 = end // HOUR_MS * HOUR_MS
    if span == MINUTE_MS or h1 >= h2:
        return None, [(start, end)]
    return (h1, h2), [(lo, hi) for lo, hi in ((start, h1), (h2, end)) if lo < hi]


def _days(hours: tuple[int, int] | None, span: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """For a dashboard by day: the whole UTC days of the hours (read from the daily
    series) and the hours left to the hourly series."""
    if hours is None or span != DAY_MS:
        return None, [hours] if hours else []
    h1, h2 = hours
    d1 = -(-h1 // DAY_MS) * DAY_MS
    d2 = h2 // DAY_MS * DAY_MS
    if d1 >= d2:
        return None, [hours]
    return (d1, d2), [(lo, hi) for lo, hi in ((h1, d1), (d2, h2)) if lo < hi]


def _json_array(dialect: str, col: Any) -> Any:
    """Aggregate a column into one JSON array: a series travels as a few strings instead
    of thousands of rows. Arrays of one SELECT are built in the same row order."""
    if dialect == "postgresql":  # as text: parsed by orjson, not the driver's json codec
        return cast(func.json_agg(col), String)
    return func.json_group_array(col, type_=String)


def _series_select(dialect: str, dim: Any, value: Any, rows: Any, keys: list) -> Select:
    """``(dim, value, buckets_json, sums_json...)`` per series from a subquery of
    ``(b, [value,] sums...)`` rows."""
    return select(
        dim.label("dim"),
        value.label("value"),
        _json_array(dialect, rows.c.b),
        *(_json_array(dialect, rows.c[s]) for s in SUMS),
    ).group_by(*keys)


def hourly_query(lo: int, hi: int, span: int, group: str | None, dialect: str, *, grain: int = HOUR_MS) -> Select:
    """Series of the whole hours ``[lo, hi)`` from the pre-summed hourly series (or of the
    whole days, from the daily ones, with ``grain=DAY_MS``)."""
    H = rollups.DASHBOARD[grain].table.c
    where = (H.app_id == (group if group is not None else "*"), H.dim.in_(DIMS), H.bucket_ms >= lo, H.bucket_ms < hi)
    amount = cast(H.used_amount, Float)  # a float sum is plenty for a chart, and cheap to move
    if span == grain:  # already one row per series and bucket
        hours = select(
            H.dim, H.value, H.bucket_ms.label("b"), *(H[s] if s != "used_amount" else amount.label(s) for s in SUMS)
        )
        # each series' arrays in bucket order (the aggregate keeps its input order); PostgreSQL
        # groups by hashing, so sorting on the bucket alone is enough, and cheaper than on text
        order = (H.bucket_ms,) if dialect == "postgresql" else (H.dim, H.bucket_ms)
        rows = hours.where(*where).order_by(*order).subquery("hours")
    else:
        bucket = H.bucket_ms - H.bucket_ms % span
        rows = (
            select(
                H.dim,
                H.value,
                bucket.label("b"),
                *(func.sum(H[s] if s != "used_amount" else amount).label(s) for s in SUMS),
            )
            .where(*where)
            .group_by(H.dim, bucket, H.value)
            .subquery("hours")
        )
    return _series_select(dialect, rows.c.dim, rows.c.value, rows, [rows.c.dim, rows.c.value])


def minute_query(ranges: list[tuple[int, int]], span: int, group: str | None, dialect: str) -> CompoundSelect:
    """Series of the ranges left to the per-minute rollups (the edges, or all of it)."""
    bucket = M.bucket_ms if span == MINUTE_MS else M.bucket_ms - M.bucket_ms % span
    where = [or_(*(and_(M.bucket_ms >= lo, M.bucket_ms < hi) for lo, hi in ranges))]
    if group is not None:
        where.append(M.app_id == group)
    sums = [func.sum(M[s] if s != "used_amount" else cast(M[s], Float)).label(s) for s in SUMS]
    parts = []
    for dim, key in (("total", None), ("model", M.model), ("strategy", M.strategy)):
        keys = [key.label("value")] if key is not None else []
        rows = (
            select(bucket.label("b"), *keys, *sums)
            .where(*where)
            .group_by(bucket, *([key] if key is not None else []))
            .subquery(f"m_{dim}")
        )
        value = rows.c.value if key is not None else literal_column("''")
        parts.append(
            _series_select(dialect, literal_column(f"'{dim}'"), value, rows, [rows.c.value] if key is not None else [])
        )
    return union_all(*parts)


def accumulate(rows: list[Any], first: int, span: int, size: int) -> dict[tuple[str, str], Columns]:
    """Dense per-bucket columns per (dim, value) series; pieces of one bucket add up."""
    series: dict[tuple[str, str], Columns] = {}
    for dim, value, buckets, *arrays in rows:
        if not buckets or buckets == "[]":  # an aggregate over no rows
            continue
        index = [(b - first) // span for b in orjson.loads(buckets)]
        cols = series.get((dim, value))
        if cols is None:
            cols = series[(dim, value)] = [[0] * size for _ in SUMS]
        a = index[0]
        contiguous = index == list(range(a, a + len(index)))  # the usual case: add slices
        for col, array in zip(cols, arrays, strict=True):
            values = orjson.loads(array)
            if contiguous:
                col[a : a + len(values)] = map(add, col[a : a + len(values)], values)
            else:
                for i, v in zip(index, values, strict=True):
                    col[i] += v
    return series


def _fields(sums: list) -> dict[str, Any]:
    requests = int(sums[0])
    return {
        "requests": requests,
        "errors": int(sums[1]),
        "input_tokens": int(sums[2]),
        "output_tokens": int(sums[3]),
        "total_tokens": int(sums[4]),
        "used_amount": float(sums[5]),
        "avg_ttfb_milliseconds": round(int(sums[6]) / requests, 1) if requests else 0,
    }


def _series(cols: Columns) -> dict[str, list]:
    requests, errors, input_tokens, output_tokens, total_tokens, amount, ttfb = cols
    return {
        "requests": requests,
        "errors": errors,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "used_amount": [float(v) for v in amount],
        "avg_ttfb_milliseconds": [round(s / n, 1) if n else 0 for s, n in zip(ttfb, requests, strict=True)],
    }


def _entries(series: dict[tuple[str, str], Columns], dim: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {dim: value, "totals": _fields([sum(col) for col in cols]), "series": _series(cols)}
        for (d, value), cols in series.items()
        if d == dim
    ]
    out.sort(key=lambda e: (-e["totals"]["requests"], e[dim]))
    return out


def build_dashboard(rows: list[Any], start: int, end: int, span: int) -> dict[str, Any]:
    first = start - start % span
    timestamps = list(range(first, end, span))
    series = accumulate(rows, first, span, len(timestamps))
    total = series.get(("total", "")) or [[0] * len(timestamps) for _ in SUMS]
    return {
        "timestamps": timestamps,
        "totals": _fields([sum(col) for col in total]),
        "series": _series(total),
        "by_model": _entries(series, "model"),
        "by_strategy": _entries(series, "strategy"),
    }


async def _rows(engine: AsyncEngine, stmt: Any) -> list[Any]:
    if stmt is None:
        return []
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(stmt)]


@router.get("/dashboard", response_model=None)
async def dashboard(
    request: Request,
    group: Annotated[
        Annotated[str, Field(max_length=64), AfterValidator(no_nul)] | None,
        BeforeValidator(blank_to_none),
        Query(description="only this app's usage"),
    ] = None,
    start_timestamp: Millis = None,
    end_timestamp: Millis = None,
    timespan: Annotated[Literal["minute", "hour", "day"] | None, BeforeValidator(blank_to_none), Query()] = None,
) -> Response:
    """Requests, errors, tokens, amount and TTFB over time, per model and per strategy."""
    span_name = timespan or "hour"
    span = SPANS[span_name]
    if end_timestamp is None:
        end_timestamp = now_ms() if start_timestamp is None else max(now_ms(), start_timestamp + 1)
    if start_timestamp is None:
        start_timestamp = max(0, end_timestamp - DEFAULT_RANGE_MS)
    if end_timestamp <= start_timestamp:
        raise HTTPException(400, "end_timestamp: must be greater than start_timestamp")
    buckets = -(-(end_timestamp - (start_timestamp - start_timestamp % span)) // span)
    if buckets > MAX_BUCKETS:
        raise HTTPException(400, f"timespan: {buckets} {span_name} buckets exceed {MAX_BUCKETS}; use a longer timespan")
    services = request.app.state.services
    await current_rollups(services.engine)
    engine: AsyncEngine = log_reader(services)
    dialect = engine.dialect.name
    hours, minutes = _pieces(start_timestamp, end_timestamp, span)
    days, hour_ranges = _days(hours, span)
    queries = [
        hourly_query(*days, span, group, dialect, grain=DAY_MS) if days else None,
        *(hourly_query(*r, span, group, dialect) for r in hour_ranges),
        minute_query(minutes, span, group, dialect) if minutes else None,
    ]
    if dialect == "sqlite":  # one connection: run them one after the other
        results = [await _rows(engine, q) for q in queries]
    else:
        results = await asyncio.gather(*(_rows(engine, q) for q in queries))
    data = {
        "group": group or "",
        "timespan": span_name,
        "start_timestamp": start_timestamp,
        "end_timestamp": end_timestamp,
        **build_dashboard([row for rows in results for row in rows], start_timestamp, end_timestamp, span),
    }
    return json_response(data)
