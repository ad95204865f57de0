"""Log search and dashboard speed on a big usage log (SQLite and PostgreSQL).

Generates 1,000,000 usage log rows over the last 30 days (5 apps, 20 models, 50 relay
tokens, 10,000 users, ~4% errors with a stored request detail) into a fresh SQLite file
and a fresh PostgreSQL schema, loads them in bulk (executemany in big batches / COPY)
into the 0001 schema, fills the per-minute rollups with one INSERT ... SELECT, and
migrates to head, so migration 0002 builds the search indexes and backfills the hourly
rollups and log counts exactly as it would on an existing deployment. Then it serves
aigate on each database and times the Admin API over HTTP (loopback, client in the same
process): every seed-001 filter combination plus the extra filters, page 1 and page 500,
and the dashboard; p50/p95 over repeated runs; and the EXPLAIN plans relied on.

    .venv/bin/python -m bench.logs_search                 # full run, writes bench/LOGS_RESULTS.md
    .venv/bin/python -m bench.logs_search --rows 100000 --runs 5 --out /tmp/x.md   # quick try
    .venv/bin/python -m bench.logs_search --skip-load     # re-measure the databases already built
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import socket
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvicorn
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.api.admin import dashboard as dash
from aigate.app import create_app
from aigate.config.loader import parse_config
from aigate.config.schema import Price
from aigate.engine.pricing import price_snapshot, used_amount
from aigate.providers.base import Usage
from aigate.store import logs_query as q
from aigate.store.db import create_engine
from aigate.store.migrate import alembic_config, upgrade

HERE = Path(__file__).parent
WORK = HERE / ".work" / "logs"
DEFAULT_SQLITE = WORK / "logs.db"
DEFAULT_PG = os.environ.get("AIGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "bench_logs"
ADMIN_KEY = "bench-admin-key-0123456789"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
MARKS = {False: ("<!-- results:start -->", "<!-- results:end -->"),
         True: ("<!-- results-gc-freeze:start -->", "<!-- results-gc-freeze:end -->")}

APPS = [f"APPBENCH{i}" for i in range(1, 6)]
MODELS = [f"model-{i:02d}" for i in range(20)]
TOKENS = [(i + 1, f"token-{i + 1:02d}") for i in range(50)]  # 10 per app: token i -> app i % 5
USERS = 10_000  # user u belongs to app u % 5
STRATEGIES = {app: [(f"strategy-{k}", MODELS[(a * 4 + k) % 20]) for k in range(4)] for a, app in enumerate(APPS)}
CODES = [(200, 0.96), (429, 0.02), (500, 0.01), (400, 0.005), (502, 0.005)]
ERRORS = {429: "Rate limit reached for requests", 500: "upstream internal error: overloaded",
          400: "invalid_request_error: context length exceeded", 502: "bad gateway from upstream"}
LOG_COLUMNS = (
    "id", "request_id", "created_ms", "request_ms", "retry_ms", "retry_times", "code", "content",
    "endpoint", "app_id", "channel", "mode", "model", "ip", "user", "token_id", "token_name",
    "ttfb_ms", "metadata", "input_tokens", "output_tokens", "cached_tokens",
    "cache_creation_tokens", "image_input_tokens", "reasoning_tokens", "total_tokens",
    "web_search_count", "usage_estimated", "price", "used_amount",
)
DETAIL_COLUMNS = ("log_id", "request_body", "request_body_truncated", "response_body", "response_body_truncated")


def _channels(model_index: int) -> list[int]:
    first = model_index % 8 + 1
    return [first, (model_index + 3) % 8 + 1] if model_index % 3 == 0 else [first]


def _prices() -> dict[str, Price]:
    rnd = random.Random(7)
    return {
        m: Price(input_price=Decimal(rnd.choice(["0.1", "0.15", "0.8", "2.5", "3"])),
                 output_price=Decimal(rnd.choice(["0.4", "0.6", "4", "10", "15"])),
                 cached_price=Decimal("0.075"))
        for m in MODELS
    }


def generate(rows: int, end_ms: int, chunk: int = 50_000):
    """Yield chunks of (log tuple, detail tuple | None), oldest first; ids 1..rows."""
    rnd = random.Random(42)
    prices = _prices()
    snapshots = {m: json.dumps(price_snapshot(p)) for m, p in prices.items()}
    codes, weights = [c for c, _ in CODES], [w for _, w in CODES]
    start_ms = end_ms - 30 * DAY
    step = (end_ms - start_ms) / rows
    out = []
    for i in range(rows):
        created = start_ms + int(i * step + rnd.random() * step)
        app_i = rnd.randrange(5)
        app = APPS[app_i]
        if rnd.random() < 0.7:
            strategy, model = rnd.choice(STRATEGIES[app])
            endpoint = "/bp/ai/chat"
        else:
            strategy, model = "", rnd.choice(MODELS)
            endpoint = "/v1/chat/completions"
        m_i = MODELS.index(model)
        token_id, token_name = TOKENS[app_i + 5 * rnd.randrange(10)]
        user = f"user-{app_i + 5 * rnd.randrange(USERS // 5):05d}"
        code = rnd.choices(codes, weights)[0]
        inp = rnd.randrange(20, 4000)
        out_t = rnd.randrange(0, 1200) if code == 200 else 0
        cached = inp // 3 if rnd.random() < 0.2 else 0
        usage = Usage(input_tokens=inp, output_tokens=out_t, cached_tokens=cached)
        amount = used_amount(usage, prices[model]) if code == 200 else Decimal(0)
        retries = 1 if code == 429 and rnd.random() < 0.5 else 0
        log = (
            i + 1, str(740_000_000_000_000_000 + i * 4096 + rnd.randrange(4096)), created,
            created - rnd.randrange(1, 50), created - 200 if retries else None, retries, code,
            ERRORS.get(code, ""), endpoint, app, rnd.choice(_channels(m_i)), 1, model,
            f"10.{app_i}.{rnd.randrange(256)}.{rnd.randrange(256)}", user, token_id, token_name,
            rnd.randrange(80, 3000), json.dumps({"strategy": strategy} if strategy else {}),
            inp, out_t, cached, 0, 0, 0, inp + out_t, 0, False, snapshots[model], amount,
        )
        detail = None
        if code != 200:
            detail = (i + 1, json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * 120}]}),
                      False, json.dumps({"error": {"message": ERRORS[code]}}), False)
        out.append((log, detail))
        if len(out) >= chunk:
            yield out
            out = []
    if out:
        yield out


ROLLUP_SQL = (
    "INSERT INTO usage_rollups (bucket_ms, app_id, model, strategy, requests, errors, input_tokens, "
    "output_tokens, total_tokens, used_amount, ttfb_ms_sum) "
    "SELECT created_ms / 60000 * 60000, app_id, model, {strategy}, count(*), "
    "sum(CASE WHEN code = 200 THEN 0 ELSE 1 END), sum(input_tokens), sum(output_tokens), "
    "sum(total_tokens), sum(used_amount), sum(ttfb_ms) FROM usage_logs "
    "GROUP BY created_ms / 60000 * 60000, app_id, model, {strategy}"
)


async def migrate_to(engine: AsyncEngine, revision: str) -> None:
    def _run(connection) -> None:
        cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def load_sqlite(path: Path, rows: int, end_ms: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    await migrate_to(engine, "0001")
    await engine.dispose()
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    log_sql = f"INSERT INTO usage_logs ({', '.join(map(_quote, LOG_COLUMNS))}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
    detail_sql = f"INSERT INTO request_details ({', '.join(DETAIL_COLUMNS)}) VALUES (?, ?, ?, ?, ?)"
    for chunk in generate(rows, end_ms):
        db.executemany(log_sql, [(*log[:-1], str(log[-1])) for log, _ in chunk])
        db.executemany(detail_sql, [d for _, d in chunk if d])
        db.commit()
    timings["insert rows"] = time.perf_counter() - started
    started = time.perf_counter()
    db.execute(ROLLUP_SQL.format(strategy="coalesce(json_extract(metadata, '$.strategy'), '')"))
    db.commit()
    db.close()
    timings["minute rollups"] = time.perf_counter() - started
    started = time.perf_counter()
    engine = create_engine(f"sqlite:///{path}")
    await upgrade(engine)  # 0002: indexes and backfill
    timings["migration 0002"] = time.perf_counter() - started
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    await engine.dispose()
    timings["analyze"] = time.perf_counter() - started
    return timings


def _quote(name: str) -> str:
    return f'"{name}"'


def pg_url(base: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={PG_SCHEMA}"


async def load_postgres(base_url: str, rows: int, end_ms: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(base_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    await conn.execute(f'CREATE SCHEMA "{PG_SCHEMA}"')
    await conn.close()
    engine = create_engine(pg_url(base_url))
    await migrate_to(engine, "0001")
    await engine.dispose()
    started = time.perf_counter()
    conn = await asyncpg.connect(base_url, server_settings={"search_path": PG_SCHEMA})
    for chunk in generate(rows, end_ms):
        await conn.copy_records_to_table("usage_logs", records=[log for log, _ in chunk], columns=list(LOG_COLUMNS))
        details = [d for _, d in chunk if d]
        if details:
            await conn.copy_records_to_table("request_details", records=details, columns=list(DETAIL_COLUMNS))
    await conn.execute("SELECT setval(pg_get_serial_sequence('usage_logs', 'id'), $1)", rows)
    timings["insert rows (COPY)"] = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute(ROLLUP_SQL.format(strategy="coalesce(metadata->>'strategy', '')"))
    timings["minute rollups"] = time.perf_counter() - started
    await conn.close()
    started = time.perf_counter()
    engine = create_engine(pg_url(base_url))
    await upgrade(engine)
    await engine.dispose()
    timings["migration 0002"] = time.perf_counter() - started
    started = time.perf_counter()
    conn = await asyncpg.connect(base_url, server_settings={"search_path": PG_SCHEMA})
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


# --- measurement


@dataclass
class Case:
    name: str
    path: str  # /api/logs/search or /api/log/{group}/search or /api/dashboard
    params: dict[str, Any]
    deep: bool = True  # also time page 500


@dataclass
class Result:
    case: Case
    total: int | None = None
    page1: list[float] = field(default_factory=list)
    page500: list[float] = field(default_factory=list)


async def sample_request_id(db_url: str) -> str:
    """A request id that exists: the generator's ids carry a random part."""
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT request_id FROM usage_logs WHERE id = 123457")).scalar()
    await engine.dispose()
    return value or ""


def cases(now: int, request_id: str) -> list[Case]:
    app, model, token = APPS[0], STRATEGIES[APPS[0]][0][1], TOKENS[0][1]
    day = {"start_timestamp": now - DAY, "end_timestamp": now}
    week = {"start_timestamp": now - 7 * DAY}
    grp = f"/api/log/{app}/search"
    glob = "/api/logs/search"
    return [
        # seed 001, global
        Case("global: no filter (30 days)", glob, {}),
        Case("global: last 24 h", glob, dict(day)),
        Case("global: last 7 days", glob, dict(week)),
        Case("global: model_name", glob, {"model_name": model}),
        Case("global: code_type=success", glob, {"code_type": "success"}),
        Case("global: code_type=error", glob, {"code_type": "error"}),
        Case("global: model_name + code_type=error", glob, {"model_name": model, "code_type": "error"}),
        Case("global: model_name + 24 h + success", glob, {"model_name": model, "code_type": "success", **day}),
        Case("global: 7 days + error", glob, {"code_type": "error", **week}),
        # seed 001, group
        Case("group: no filter", grp, {}),
        Case("group: last 24 h", grp, dict(day)),
        Case("group: model_name", grp, {"model_name": model}),
        Case("group: token_name", grp, {"token_name": token}),
        Case("group: code_type=error", grp, {"code_type": "error"}),
        Case("group: model_name + token_name", grp, {"model_name": model, "token_name": token}),
        Case("group: token_name + 7 days + success", grp, {"token_name": token, "code_type": "success", **week}),
        Case("group: model + token + 24 h + error", grp,
             {"model_name": model, "token_name": token, "code_type": "error", **day}),
        # extra filters
        Case("global: group", glob, {"group": app}),
        Case("global: channel", glob, {"channel": 3}),
        Case("global: code=429", glob, {"code": 429}),
        Case("global: user", glob, {"user": "user-00010"}, deep=False),
        Case("group: user + error", grp, {"user": "user-00010", "code_type": "error"}, deep=False),
        Case("global: request_id", glob, {"request_id": request_id}, deep=False),
        Case("global: keyword (30 days)", glob, {"keyword": "overloaded"}),
        Case("global: keyword + 24 h", glob, {"keyword": "overloaded", **day}),
        Case("group: keyword user + 24 h", grp, {"keyword": "user-0001", **day}),
    ]


def dashboard_cases(now: int) -> list[Case]:
    d30 = {"start_timestamp": now - 30 * DAY, "end_timestamp": now}
    return [
        Case("dashboard: 30 days by hour", "/api/dashboard", {**d30, "timespan": "hour"}, deep=False),
        Case("dashboard: 30 days by hour, one group", "/api/dashboard",
             {**d30, "timespan": "hour", "group": APPS[0]}, deep=False),
        Case("dashboard: 30 days by day", "/api/dashboard", {**d30, "timespan": "day"}, deep=False),
        Case("dashboard: 24 h by minute", "/api/dashboard",
             {"start_timestamp": now - DAY, "end_timestamp": now, "timespan": "minute"}, deep=False),
        Case("dashboard: default (24 h by hour)", "/api/dashboard", {}, deep=False),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(db_url: str, *, gc_freeze: bool = False) -> tuple[uvicorn.Server, asyncio.Task, str]:
    cfg = parse_config({"server": {"admin_key": ADMIN_KEY}, "database": {"url": db_url},
                        "logs": {"retention_days": 0}}, env={})
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    if gc_freeze:
        # everything allocated at start-up leaves the collector's view: no full-heap pauses
        gc.freeze()
    return server, task, f"http://127.0.0.1:{port}"


async def _timed(session: aiohttp.ClientSession, url: str, params: dict) -> tuple[float, Any]:
    started = time.perf_counter()
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as resp:
        body = orjson.loads(await resp.read())  # a fast parser: the client's cost is not aigate's
        if resp.status != 200:
            raise RuntimeError(f"{url} {params}: {resp.status} {body}")
    return (time.perf_counter() - started) * 1000, body


async def measure(db_url: str, all_cases: list[Case], runs: int, gc_freeze: bool) -> list[Result]:
    server, task, base = await serve(db_url, gc_freeze=gc_freeze)
    results = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as session:
            for case in all_cases:
                res = Result(case)
                pages = [(1, res.page1)] + ([(500, res.page500)] if case.deep else [])
                for page, samples in pages:
                    params = dict(case.params)
                    if not case.path.endswith("dashboard"):
                        params.update(page=page, per_page=20)
                    for i in range(runs + 2):  # two warm-up requests
                        ms, body = await _timed(session, base + case.path, params)
                        if i >= 2:
                            samples.append(ms)
                        if res.total is None and "total" in (body.get("data") or {}):
                            res.total = body["data"]["total"]
                results.append(res)
                print(f"  {case.name:45s} p50 {_p(res.page1, 50):7.1f} ms  p95 {_p(res.page1, 95):7.1f} ms"
                      + (f"  | page 500 p95 {_p(res.page500, 95):7.1f} ms" if res.page500 else ""), flush=True)
    finally:
        server.should_exit = True
        await task
    return results


def _p(samples: list[float], pct: int) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


# --- plans


async def plans(db_url: str, now: int) -> list[tuple[str, str, str]]:
    """EXPLAIN output of the statements the API runs for a few representative searches."""
    engine = create_engine(db_url)
    dialect = engine.dialect.name
    chosen = [
        ("global, no filter: page 500", q.page_query(q.LogFilter(), dialect, offset=9980, limit=20)),
        ("global, no filter: totals and facets", q.counts_query(q.LogFilter(), dialect, now)),
        ("global, code_type=error: page 500",
         q.page_query(q.LogFilter(code_type="error"), dialect, offset=9980, limit=20)),
        ("group + model_name: page 500",
         q.page_query(q.LogFilter(group=APPS[0], model=STRATEGIES[APPS[0]][0][1]), dialect, offset=9980, limit=20)),
        ("group + token_name + 24 h: totals and facets",
         q.counts_query(q.LogFilter(group=APPS[0], token_name=TOKENS[0][1], start_ms=now - DAY, end_ms=now),
                        dialect, now)),
        ("global, user: totals and facets", q.counts_query(q.LogFilter(user="user-00010"), dialect, now)),
        ("global, keyword: page 1",
         q.page_query(q.LogFilter(keyword="overloaded"), dialect, offset=0, limit=20)),
        ("dashboard, 30 days by hour: the hourly series",
         dash.hourly_query(*dash._pieces(now - 30 * DAY, now, HOUR)[0], HOUR, None, dialect)),
    ]
    out = []
    async with engine.connect() as conn:
        for title, stmt in chosen:
            sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            if dialect == "postgresql":
                rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql)).all()
                text = "\n".join(r[0] for r in rows)
            else:
                rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
                text = "\n".join(f"{'  ' * _depth(rows, r)}{r[3]}" for r in rows)
            out.append((title, sql, text))
    await engine.dispose()
    return out


def _depth(rows: list, row: Any) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent:
        depth += 1
        parent = parents.get(parent, 0)
    return depth


# --- report


def _table(results: list[Result], deep: bool = True) -> list[str]:
    head = "| case | total | page 1 p50 | page 1 p95 |" + (" page 500 p50 | page 500 p95 |" if deep else "")
    sep = "|---|---:|---:|---:|" + ("---:|---:|" if deep else "")
    lines = [head, sep]
    for r in results:
        total = "" if r.total is None else f"{r.total:,}"
        line = f"| {r.case.name} | {total} | {_p(r.page1, 50):.1f} | {_p(r.page1, 95):.1f} |"
        if deep:
            line += (f" {_p(r.page500, 50):.1f} | {_p(r.page500, 95):.1f} |" if r.page500 else " – | – |")
        lines.append(line)
    return lines


def _score(results: list[Result]) -> float:
    return statistics.median(_p(r.page1, 95) for r in results)


def report(path: Path, args: argparse.Namespace, loads: dict[str, dict[str, float]],
           runs: dict[str, list[tuple[list[Result], list[Result]]]], explain: dict[str, list]) -> None:
    mark_start, mark_end = MARKS[args.gc_freeze]
    title = "Results with gc.freeze() after start-up" if args.gc_freeze else "Results"
    lines = [
        mark_start,
        f"## {title} ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        (f"{args.rows:,} rows; {args.runs} timed requests per case after 2 warm-ups; the whole "
        f"measurement ran {args.repeat} times per database and the run with the lower median p95 "
        "is shown (the other run's median p95 is noted). Milliseconds, end to end over HTTP "
        f"on loopback. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; PostgreSQL with its default settings. Other work "
        "shared this machine during the run, so single numbers are noisy."),
        "",
    ]
    for backend, load in loads.items():
        lines.append(f"Load ({backend}): " + ", ".join(f"{k} {v:.0f} s" for k, v in load.items()) + ".")
    lines.append("")
    for backend, backend_runs in runs.items():
        scored = sorted(backend_runs, key=lambda pair: _score(pair[0]))
        best, others = scored[0], scored[1:]
        note = ", ".join(f"{_score(o[0]):.1f} ms" for o in others)
        lines += [f"### {backend}", "",
                  f"Median of the per-case p95 (page 1): {_score(best[0]):.1f} ms"
                  + (f" (other run: {note})" if note else "") + ".", ""]
        lines += _table(best[0])
        lines += ["", *_table(best[1], deep=False), ""]
    for backend, items in (explain.items() if not args.gc_freeze else ()):  # once is enough
        lines += [f"### Plans: {backend}", ""]
        for title, sql, text in items:
            lines += [f"**{title}**", "", "```sql", sql.strip(), "```", "", "```", text, "```", ""]
    lines.append(mark_end)
    block = "\n".join(lines)
    old = path.read_text() if path.exists() else ""
    if mark_start in old and mark_end in old:
        new = old[: old.index(mark_start)] + block + old[old.index(mark_end) + len(mark_end):]
    else:
        new = (old or "# Log search speed\n\n") + "\n" + block + "\n"
    path.write_text(new)
    print(f"wrote {path}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed requests per case")
    parser.add_argument("--repeat", type=int, default=2, help="whole measurements per database")
    parser.add_argument("--sqlite", type=Path, default=DEFAULT_SQLITE)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "LOGS_RESULTS.md")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after start-up; results go to their own section")
    args = parser.parse_args()

    stamp = WORK / "end_ms"
    if args.skip_load and stamp.exists():
        end_ms = int(stamp.read_text())
    else:
        end_ms = int(time.time() * 1000)
    backends = {}
    if args.only != "postgres":
        backends["SQLite"] = f"sqlite:///{args.sqlite}"
    if args.only != "sqlite" and args.pg:
        backends["PostgreSQL"] = pg_url(args.pg)

    loads: dict[str, dict[str, float]] = {}
    saved_loads = WORK / "loads.json"
    if args.skip_load and saved_loads.exists():
        loads = json.loads(saved_loads.read_text())
    if not args.skip_load:
        WORK.mkdir(parents=True, exist_ok=True)
        stamp.write_text(str(end_ms))
        if "SQLite" in backends:
            print("loading SQLite ...", flush=True)
            loads["SQLite"] = await load_sqlite(args.sqlite, args.rows, end_ms)
            print("  ", loads["SQLite"], flush=True)
        if "PostgreSQL" in backends:
            print("loading PostgreSQL ...", flush=True)
            loads["PostgreSQL"] = await load_postgres(args.pg, args.rows, end_ms)
            print("  ", loads["PostgreSQL"], flush=True)
        saved_loads.write_text(json.dumps(loads))

    now = end_ms
    runs: dict[str, list[tuple[list[Result], list[Result]]]] = {b: [] for b in backends}
    for i in range(args.repeat):
        for backend, url in backends.items():
            print(f"measuring {backend}, run {i + 1}/{args.repeat}", flush=True)
            searches = await measure(url, cases(now, await sample_request_id(url)), args.runs, args.gc_freeze)
            boards = await measure(url, dashboard_cases(now), args.runs, args.gc_freeze)
            runs[backend].append((searches, boards))
    explain = {backend: await plans(url, now) for backend, url in backends.items()}
    if args.repeat > 0:
        report(args.out, args, loads, runs, explain)


if __name__ == "__main__":
    asyncio.run(main())
