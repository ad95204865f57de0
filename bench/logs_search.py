"""Log search and dashboard speed on a big usage log (SQLite and PostgreSQL).

Generates usage log rows over the last 30 days (5 apps, 20 models, 50 relay tokens,
10,000 users, ~4% errors with a stored request detail) into a fresh SQLite file and a
fresh PostgreSQL schema (one per ``--tag``), in one of two ways:

* ``--loader writer`` (the default): through the batched writer's own transaction script
  (``sinks.write_usage_logs``, 2,000 rows per transaction) on the migrated schema, so
  every index, trigger and rollup is maintained exactly as in production;
* ``--loader copy`` (for 10,000,000 rows): bulk-loaded (COPY / executemany) into the 0001
  schema, the per-minute rollups rebuilt with one INSERT ... SELECT, then migrated to
  head, so the migrations build the indexes and rebuild the hourly and daily series and
  the log counts exactly as on an existing deployment.

Then it serves aigate on each database and times the Admin API over HTTP (loopback,
client in the same process): every seed-001 filter combination plus the extra filters,
pages 1 and 500 at per_page 20 and 100, keyword searches, the dashboard, a stability
phase (many runs on pooled connections, then ANALYZE, then again); p50/p95; and the
EXPLAIN plans relied on.

    .venv/bin/python -m bench.logs_search                 # 1M rows, writes bench/LOGS_RESULTS.md
    .venv/bin/python -m bench.logs_search --rows 10000000 --loader copy --tag 10m --only postgres
    .venv/bin/python -m bench.logs_search --rows 100000 --runs 5 --out /tmp/x.md   # quick try
    .venv/bin/python -m bench.logs_search --skip-load     # re-measure the databases already built
    .venv/bin/python -m bench.logs_search --drop --tag 10m   # drop a tag's schema and file
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import sqlite3
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
from aigate.store import logs_keyword
from aigate.store import logs_query as q
from aigate.store.db import READER_SETTINGS, create_engine
from aigate.store.migrate import alembic_config, upgrade
from aigate.store.script import run_script
from aigate.store.sinks import write_usage_logs

HERE = Path(__file__).parent
WORK = HERE / ".work" / "logs"
DEFAULT_PG = os.environ.get("AIGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "bench_logs"  # + "_<tag>"
ADMIN_KEY = "bench-admin-key-0123456789"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
WRITER_BATCH = 2_000


def marks(tag: str) -> tuple[str, str]:
    return f"<!-- results-{tag}:start -->", f"<!-- results-{tag}:end -->"


APPS = [f"APPBENCH{i}" for i in range(1, 6)]
MODELS = [f"model-{i:02d}" for i in range(20)]
TOKENS = [(i + 1, f"token-{i + 1:02d}") for i in range(50)]  # 10 per app: token i -> app i % 5
USERS = 10_000  # user u belongs to app u % 5
STRATEGIES = {app: [(f"strategy-{k}", MODELS[(a * 4 + k) % 20]) for k in range(4)] for a, app in enumerate(APPS)}
CODES = [(200, 0.96), (429, 0.02), (500, 0.01), (400, 0.005), (502, 0.005)]
ERRORS = {
    429: "Rate limit reached for requests",
    500: "upstream internal error: overloaded",
    400: "invalid_request_error: context length exceeded",
    502: "bad gateway from upstream",
}
LOG_COLUMNS = (
    "id",
    "request_id",
    "created_ms",
    "request_ms",
    "retry_ms",
    "retry_times",
    "code",
    "content",
    "endpoint",
    "app_id",
    "channel",
    "mode",
    "model",
    "ip",
    "user",
    "token_id",
    "token_name",
    "ttfb_ms",
    "metadata",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "image_input_tokens",
    "reasoning_tokens",
    "total_tokens",
    "web_search_count",
    "usage_estimated",
    "price",
    "used_amount",
)
DETAIL_COLUMNS = ("log_id", "request_body", "request_body_truncated", "response_body", "response_body_truncated")


def _channels(model_index: int) -> list[int]:
    first = model_index % 8 + 1
    return [first, (model_index + 3) % 8 + 1] if model_index % 3 == 0 else [first]


def _prices() -> dict[str, Price]:
    rnd = random.Random(7)
    return {
        m: Price(
            input_price=Decimal(rnd.choice(["0.1", "0.15", "0.8", "2.5", "3"])),
            output_price=Decimal(rnd.choice(["0.4", "0.6", "4", "10", "15"])),
            cached_price=Decimal("0.075"),
        )
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
            i + 1,
            str(740_000_000_000_000_000 + i * 4096 + rnd.randrange(4096)),
            created,
            created - rnd.randrange(1, 50),
            created - 200 if retries else None,
            retries,
            code,
            ERRORS.get(code, ""),
            endpoint,
            app,
            rnd.choice(_channels(m_i)),
            1,
            model,
            f"10.{app_i}.{rnd.randrange(256)}.{rnd.randrange(256)}",
            user,
            token_id,
            token_name,
            rnd.randrange(80, 3000),
            json.dumps({"strategy": strategy} if strategy else {}),
            inp,
            out_t,
            cached,
            0,
            0,
            0,
            inp + out_t,
            0,
            False,
            snapshots[model],
            amount,
        )
        detail = None
        if code != 200:
            detail = (
                i + 1,
                json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * 120}]}),
                False,
                json.dumps({"error": {"message": ERRORS[code]}}),
                False,
            )
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


def as_writer_row(log: tuple, detail: tuple | None) -> dict[str, Any]:
    """A generated row as the App API hands it to the batched writer (no id: the database
    assigns it; JSON columns as objects; bodies inline)."""
    row = dict(zip(LOG_COLUMNS, log, strict=True))
    del row["id"]
    row["metadata"] = json.loads(row["metadata"])
    row["price"] = json.loads(row["price"])
    if detail is not None:
        row.update(zip(DETAIL_COLUMNS[1:], detail[1:], strict=True))
    return row


async def load_writer(db_url: str, rows: int, end_ms: int) -> dict[str, float]:
    """Every row through the writer's transaction script, on the migrated schema."""
    engine = create_engine(db_url)
    await upgrade(engine)
    started = time.perf_counter()
    done = 0
    for chunk in generate(rows, end_ms, chunk=WRITER_BATCH):
        await run_script(engine, write_usage_logs, [as_writer_row(log, d) for log, d in chunk])
        done += len(chunk)
        if done % 100_000 == 0:
            print(f"    {done:,} rows, {done / (time.perf_counter() - started):,.0f} rows/s", flush=True)
    elapsed = time.perf_counter() - started
    timings = {"writer (rows, indexes, rollups)": elapsed, "rows/s": rows / elapsed}
    started = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    await engine.dispose()
    timings["analyze"] = time.perf_counter() - started
    return timings


async def drop_pg_schema(base_url: str, schema: str) -> None:
    conn = await asyncpg.connect(base_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def fresh_pg_schema(base_url: str, schema: str) -> None:
    await drop_pg_schema(base_url, schema)
    conn = await asyncpg.connect(base_url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()


def fresh_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def load_sqlite(path: Path, rows: int, end_ms: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    engine = create_engine(f"sqlite:///{path}")
    await migrate_to(engine, "0001")
    await engine.dispose()
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    log_sql = (
        f"INSERT INTO usage_logs ({', '.join(map(_quote, LOG_COLUMNS))}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
    )
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
    timings["migrations (indexes, rollup rebuild)"] = time.perf_counter() - started
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    await engine.dispose()
    timings["analyze"] = time.perf_counter() - started
    return timings


def _quote(name: str) -> str:
    return f'"{name}"'


def pg_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def replicate_rows(conn, rows: int, copies: int, end_ms: int, timings: dict[str, float]) -> None:
    """``rows / copies`` generated rows are COPYed into a staging table, then inserted
    ``copies`` times in time order (copy k shifted by k/copies of the gap between two
    generated rows, its request id suffixed with k), so the log keeps the generator's mix
    and arrival order at a tenth of the Python work."""
    started = time.perf_counter()
    seed = rows // copies
    await conn.execute("CREATE UNLOGGED TABLE seed_logs (LIKE usage_logs)")
    await conn.execute("CREATE UNLOGGED TABLE seed_details (LIKE request_details)")
    for chunk in generate(seed, end_ms):
        await conn.copy_records_to_table("seed_logs", records=[log for log, _ in chunk], columns=list(LOG_COLUMNS))
        details = [d for _, d in chunk if d]
        if details:
            await conn.copy_records_to_table("seed_details", records=details, columns=list(DETAIL_COLUMNS))
    timings["generate and COPY the seed rows"] = time.perf_counter() - started
    started = time.perf_counter()
    indexes = [
        r[0]
        for r in await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'usage_logs' AND schemaname = current_schema() "
            "AND indexname <> 'pk_usage_logs'"
        )
    ]
    for name in [
        r[0]
        for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'usage_logs' AND schemaname = current_schema() "
            "AND indexname <> 'pk_usage_logs'"
        )
    ]:
        await conn.execute(f'DROP INDEX "{name}"')
    shift = f"(k * {30 * DAY} / {seed} / {copies})::bigint"
    moved = {
        "request_id": "request_id || k",
        "created_ms": f"created_ms + {shift}",
        "request_ms": f"request_ms + {shift}",
        "retry_ms": f"retry_ms + {shift}",
    }
    cols = [c for c in LOG_COLUMNS if c != "id"]
    await conn.execute(
        f"INSERT INTO usage_logs ({', '.join(map(_quote, cols))}) "
        f"SELECT {', '.join(moved.get(c, _quote(c)) for c in cols)} "
        f"FROM seed_logs CROSS JOIN generate_series(0, {copies - 1}) AS k "
        f"ORDER BY created_ms + {shift}, id, k"
    )
    await conn.execute("CREATE INDEX seed_rid ON seed_logs (id)")
    await conn.execute(
        f"INSERT INTO request_details ({', '.join(DETAIL_COLUMNS)}) "
        "SELECT l.id, d.request_body, d.request_body_truncated, d.response_body, d.response_body_truncated "
        "FROM seed_details d JOIN seed_logs s ON s.id = d.log_id "
        f"CROSS JOIN generate_series(0, {copies - 1}) AS k "
        "JOIN usage_logs l ON l.request_id = s.request_id || k "
        "WHERE l.code <> 200"
    )
    await conn.execute("DROP TABLE seed_logs, seed_details")
    timings[f"insert {copies} time-shifted copies (INSERT ... SELECT)"] = time.perf_counter() - started
    started = time.perf_counter()
    for indexdef in indexes:  # the 0001 indexes, built once over the whole log
        await conn.execute(indexdef)
    timings["0001 indexes"] = time.perf_counter() - started


async def load_postgres(base_url: str, schema: str, rows: int, end_ms: int, replicate: int = 1) -> dict[str, float]:
    timings: dict[str, float] = {}
    engine = create_engine(pg_url(base_url, schema))
    await migrate_to(engine, "0001")
    await engine.dispose()
    started = time.perf_counter()
    conn = await asyncpg.connect(base_url, server_settings={"search_path": schema})
    await conn.execute("SET maintenance_work_mem = '512MB'")
    if replicate == 1:
        for chunk in generate(rows, end_ms):
            await conn.copy_records_to_table("usage_logs", records=[log for log, _ in chunk], columns=list(LOG_COLUMNS))
            details = [d for _, d in chunk if d]
            if details:
                await conn.copy_records_to_table("request_details", records=details, columns=list(DETAIL_COLUMNS))
        await conn.execute("SELECT setval(pg_get_serial_sequence('usage_logs', 'id'), $1)", rows)
        timings["insert rows (COPY)"] = time.perf_counter() - started
    else:
        await replicate_rows(conn, rows, replicate, end_ms, timings)
    started = time.perf_counter()
    await conn.execute(ROLLUP_SQL.format(strategy="coalesce(metadata->>'strategy', '')"))
    timings["minute rollups"] = time.perf_counter() - started
    await conn.close()
    started = time.perf_counter()
    engine = create_engine(pg_url(base_url, schema))
    await upgrade(engine)
    await engine.dispose()
    timings["migrations (indexes, rollup rebuild)"] = time.perf_counter() - started
    started = time.perf_counter()
    conn = await asyncpg.connect(base_url, server_settings={"search_path": schema})
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


# --- measurement

PAGES = ((1, 20), (500, 20), (1, 100), (500, 100))  # (page, per_page)


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
    samples: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # (page, per_page) -> wall ms
    cpu: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # (page, per_page) -> CPU ms

    @property
    def page1(self) -> list[float]:
        return self.samples.get((1, 20), [])


async def sample_request_id(db_url: str) -> str:
    """A request id that exists: the generator's ids carry a random part."""
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        value = (
            await conn.exec_driver_sql(
                "SELECT request_id FROM usage_logs WHERE id = (SELECT max(id) / 2 + 7 FROM usage_logs)"
            )
        ).scalar()
    await engine.dispose()
    return value or ""


def cases(now: int, request_id: str) -> list[Case]:
    app, model, token = APPS[0], STRATEGIES[APPS[0]][0][1], TOKENS[0][1]
    rare_model = MODELS[19]  # a relay-only model: ~1.5% of the rows
    day = {"start_timestamp": now - DAY, "end_timestamp": now}
    week = {"start_timestamp": now - 7 * DAY}
    month = {"start_timestamp": now - 30 * DAY, "end_timestamp": now}
    grp = f"/api/log/{app}/search"
    glob = "/api/logs/search"
    return [
        # seed 001, global
        Case("global: no filter (30 days)", glob, {}),
        Case("global: 30 days as start/end", glob, dict(month)),
        Case("global: last 24 h", glob, dict(day)),
        Case("global: last 7 days", glob, dict(week)),
        Case("global: model_name", glob, {"model_name": model}),
        Case("global: rare model_name", glob, {"model_name": rare_model}),
        Case("global: code_type=success", glob, {"code_type": "success"}),
        Case("global: code_type=error", glob, {"code_type": "error"}),
        Case("global: model_name + code_type=success", glob, {"model_name": model, "code_type": "success"}),
        Case("global: model_name + code_type=error", glob, {"model_name": model, "code_type": "error"}),
        Case("global: model_name + 24 h + success", glob, {"model_name": model, "code_type": "success", **day}),
        Case("global: rare model + 30 days + error", glob, {"model_name": rare_model, "code_type": "error", **month}),
        Case("global: 7 days + error", glob, {"code_type": "error", **week}),
        # seed 001, group
        Case("group: no filter", grp, {}),
        Case("group: last 24 h", grp, dict(day)),
        Case("group: model_name", grp, {"model_name": model}),
        Case("group: token_name", grp, {"token_name": token}),
        Case("group: code_type=success", grp, {"code_type": "success"}),
        Case("group: code_type=error", grp, {"code_type": "error"}),
        Case("group: model_name + token_name", grp, {"model_name": model, "token_name": token}),
        Case("group: model_name + code_type=success", grp, {"model_name": model, "code_type": "success"}),
        Case("group: token_name + 7 days + success", grp, {"token_name": token, "code_type": "success", **week}),
        Case(
            "group: model + token + 30 days + error",
            grp,
            {"model_name": model, "token_name": token, "code_type": "error", **month},
        ),
        Case(
            "group: model + token + 24 h + error",
            grp,
            {"model_name": model, "token_name": token, "code_type": "error", **day},
        ),
        # extra filters
        Case("global: group", glob, {"group": app}),
        Case(
            "global: rare model + token + 30 days + error",
            glob,
            {"model_name": rare_model, "token_name": TOKENS[4][1], "code_type": "error", **month},
        ),
        Case("global: channel", glob, {"channel": 3}),
        Case("global: code=429", glob, {"code": 429}),
        Case("global: user", glob, {"user": "user-00010"}, deep=False),
        Case("group: user + error", grp, {"user": "user-00010", "code_type": "error"}, deep=False),
        Case("global: request_id", glob, {"request_id": request_id}, deep=False),
    ]


def keyword_cases(now: int, request_id: str) -> list[Case]:
    app = APPS[0]
    day = {"start_timestamp": now - DAY, "end_timestamp": now}
    month = {"start_timestamp": now - 30 * DAY, "end_timestamp": now}
    grp = f"/api/log/{app}/search"
    glob = "/api/logs/search"
    return [
        Case("keyword error text, 30 days start/end (1%)", glob, {"keyword": "overloaded", **month}),
        Case("keyword error text, no range", glob, {"keyword": "Overloaded"}),
        Case("keyword error text + 24 h", glob, {"keyword": "overloaded", **day}),
        Case("keyword request id digits, 30 days", glob, {"keyword": request_id[-9:], **month}),
        Case("keyword user, 30 days", glob, {"keyword": "user-0001", **month}),
        Case("group: keyword user + 24 h", grp, {"keyword": "user-0001", **day}),
        Case("keyword model name, 30 days (5%)", glob, {"keyword": MODELS[7], **month}),
        Case("keyword token name, 30 days (2%)", glob, {"keyword": TOKENS[13][1], **month}),
        Case("keyword no match, 30 days", glob, {"keyword": "no such text", **month}),
    ]


def dashboard_cases(now: int) -> list[Case]:
    d30 = {"start_timestamp": now - 30 * DAY, "end_timestamp": now}
    return [
        Case("dashboard: 30 days by hour", "/api/dashboard", {**d30, "timespan": "hour"}, deep=False),
        Case(
            "dashboard: 30 days by hour, one group",
            "/api/dashboard",
            {**d30, "timespan": "hour", "group": APPS[0]},
            deep=False,
        ),
        Case("dashboard: 30 days by day", "/api/dashboard", {**d30, "timespan": "day"}, deep=False),
        Case(
            "dashboard: 24 h by minute",
            "/api/dashboard",
            {"start_timestamp": now - DAY, "end_timestamp": now, "timespan": "minute"},
            deep=False,
        ),
        Case("dashboard: default (24 h by hour)", "/api/dashboard", {}, deep=False),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(db_url: str) -> tuple[uvicorn.Server, asyncio.Task, str]:
    cfg = parse_config(
        {"server": {"admin_key": ADMIN_KEY}, "database": {"url": db_url}, "logs": {"retention_days": 0}}, env={}
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{port}"


def _cpu_ns(pid: int | str) -> int:
    """CPU time of every thread of a process (ns), from the scheduler's own accounting."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _own_tcp_ports() -> list[int]:
    """Local ports of this process's TCP sockets (its database connections among them)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class CpuMeter:
    """CPU time spent by this process (aigate and the client) and by the PostgreSQL
    backends of aigate's log-search pool. On a machine shared with other work, wall time
    measures the queue for a core; CPU time measures the request."""

    def __init__(self, db_url: str, *, every_pool: bool = False) -> None:
        self.pg = db_url if db_url.startswith("postgresql") else None
        self.every_pool = every_pool  # every backend connected from this process, not only the log-search pool's
        self.pids: list[int] = []
        self.conn: Any = None

    async def refresh(self) -> None:
        if not self.pg:
            return
        for _ in range(30):  # the shared server may be out of connections for a moment
            try:
                if self.conn is None:
                    self.conn = await asyncpg.connect(self.pg.split("?")[0])
                if self.every_pool:
                    rows = await self.conn.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND pid <> pg_backend_pid()",
                        _own_tcp_ports(),
                    )
                else:
                    rows = await self.conn.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                        READER_SETTINGS["application_name"],
                    )
                self.pids = [r["pid"] for r in rows]
                return
            except (OSError, asyncpg.PostgresError):
                self.conn = None
                await asyncio.sleep(1)

    def read(self) -> int:
        total = _cpu_ns("self")
        for pid in self.pids:
            try:
                total += _cpu_ns(pid)
            except FileNotFoundError:  # a connection closed since the refresh
                pass
        return total


async def _timed(
    session: aiohttp.ClientSession, url: str, params: dict, meter: CpuMeter | None = None
) -> tuple[float, float, Any]:
    cpu = meter.read() if meter else 0
    started = time.perf_counter()
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as resp:
        body = orjson.loads(await resp.read())  # a fast parser: the client's cost is not aigate's
        if resp.status != 200:
            raise RuntimeError(f"{url} {params}: {resp.status} {body}")
    wall = (time.perf_counter() - started) * 1000
    return wall, ((meter.read() - cpu) / 1e6 if meter else 0.0), body


async def _run_case(session, base: str, case: Case, runs: int, pages, meter: CpuMeter) -> Result:
    res = Result(case)
    for page, per_page in pages:
        params = dict(case.params)
        if not case.path.endswith("dashboard"):
            params.update(page=page, per_page=per_page)
        samples = res.samples.setdefault((page, per_page), [])
        cpu = res.cpu.setdefault((page, per_page), [])
        for i in range(runs + 2):  # two warm-up requests
            if i == 2:
                await meter.refresh()  # the pool's connections exist by now
            ms, cpu_ms, body = await _timed(session, base + case.path, params, meter)
            if i >= 2:
                samples.append(ms)
                cpu.append(cpu_ms)
            if res.total is None and "total" in (body.get("data") or {}):
                res.total = body["data"]["total"]
    return res


QUICK_PAGES = ((1, 20), (500, 100))  # --quick: the first page and the deepest


def _pages(case: Case, quick: bool = False):
    if case.path.endswith("dashboard"):
        return [(1, 20)]
    if quick:
        return QUICK_PAGES if case.deep else [(1, 20)]
    return PAGES if case.deep else [(1, 20), (1, 100)]


async def measure(
    db_url: str, groups: dict[str, list[Case]], runs: int, quick: bool = False
) -> dict[str, list[Result]]:
    server, task, base = await serve(db_url)
    meter = CpuMeter(db_url)
    out: dict[str, list[Result]] = {}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as session:
            for name, group in groups.items():
                out[name] = []
                for case in group:
                    res = await _run_case(session, base, case, runs, _pages(case, quick), meter)
                    out[name].append(res)
                    deep = res.cpu.get((500, 100))
                    print(
                        f"  {case.name:48s} p95 {_p(res.page1, 95):7.1f} ms wall, "
                        f"{_p(res.cpu[(1, 20)], 95):6.1f} ms CPU"
                        + (f"  | page 500/100 CPU p95 {_p(deep, 95):7.1f} ms" if deep else ""),
                        flush=True,
                    )
    finally:
        server.should_exit = True
        await task
    return out


STABILITY_RUNS = 50


async def stability(db_url: str, shapes: list[Case]) -> list[tuple[str, list[float], list[float]]]:
    """Each shape ``STABILITY_RUNS`` times on the pooled connections, then ANALYZE of the
    log (new statistics, as autovacuum makes them), then 20 more: a plan that degrades
    after a few runs, or a stale plan after ANALYZE, shows as a later spike."""
    server, task, base = await serve(db_url)
    meter = CpuMeter(db_url)
    out = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as session:
            before = {
                c.name: (await _run_case(session, base, c, STABILITY_RUNS, [(1, 20)], meter)).cpu[(1, 20)]
                for c in shapes
            }
            engine = create_engine(db_url)
            async with engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE usage_logs")
            await engine.dispose()
            for c in shapes:
                after = (await _run_case(session, base, c, 20, [(1, 20)], meter)).cpu[(1, 20)]
                out.append((c.name, before[c.name], after))
    finally:
        server.should_exit = True
        await task
    return out


def _p(samples: list[float] | None, pct: int) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


# --- plans


async def _statement(conn, dialect: str, now: int, what: str, f: q.LogFilter, offset: int, limit: int) -> Any:
    """The statement the API runs for a page or for the total and facets (on PostgreSQL a
    keyword's model and token names are looked up first, as the API does)."""
    if dialect != "postgresql":
        return (
            q.page_query(f, dialect, offset=offset, limit=limit) if what == "page" else q.counts_query(f, dialect, now)
        )
    names = None
    if f.keyword and f.user is None and f.request_id is None:
        found = [tuple(r) for r in await conn.execute(logs_keyword.names_query(f.keyword))]
        names = logs_keyword.keyword_names(found, f)
    if what != "page":
        return q.facets_query(f, now, names)
    if names is None:
        return q.page_query(f, dialect, offset=offset, limit=limit)
    return logs_keyword.keyword_page_query(f, names, offset=offset, limit=limit)


async def plans(db_url: str, now: int) -> list[tuple[str, str, str]]:
    """EXPLAIN output of the statements the API runs for a few representative searches."""
    engine = create_engine(db_url)
    dialect = engine.dialect.name
    month = {"start_ms": now - 30 * DAY, "end_ms": now}
    model, rare = STRATEGIES[APPS[0]][0][1], MODELS[19]
    page, facets = "page", "facets"
    chosen = [  # (title, what, filter, offset, limit)
        ("global, no filter: page 500 at per_page 100", page, q.LogFilter(), 49_900, 100),
        ("global, no filter: totals and facets", facets, q.LogFilter(), 0, 0),
        ("global, model_name: page 500 at per_page 100", page, q.LogFilter(model=model), 49_900, 100),
        (
            "global, rare model + token + error over 30 days: page 1",
            page,
            q.LogFilter(model=rare, token_name=TOKENS[4][1], code_type="error", **month),
            0,
            20,
        ),
        (
            "group + model_name + success: page 500 at per_page 100",
            page,
            q.LogFilter(group=APPS[0], model=model, code_type="success"),
            49_900,
            100,
        ),
        (
            "group + token_name + 24 h: totals and facets",
            facets,
            q.LogFilter(group=APPS[0], token_name=TOKENS[0][1], start_ms=now - DAY, end_ms=now),
            0,
            0,
        ),
        ("global, user: totals and facets", facets, q.LogFilter(user="user-00010"), 0, 0),
        ("keyword over 30 days: page 1", page, q.LogFilter(keyword="overloaded", **month), 0, 20),
        ("keyword over 30 days: totals and facets", facets, q.LogFilter(keyword="overloaded", **month), 0, 0),
        (
            "keyword naming a model over 30 days: page 500 at per_page 100",
            page,
            q.LogFilter(keyword=model, **month),
            49_900,
            100,
        ),
    ]
    out = []
    async with engine.connect() as conn:
        statements = [(title, await _statement(conn, dialect, now, *rest)) for title, *rest in chosen]
        statements.append(
            (
                "dashboard, 30 days by hour: the hourly series",
                dash.hourly_query(*dash._pieces(now - 30 * DAY, now, HOUR)[0], HOUR, None, dialect),
            )
        )
        for title, stmt in statements:
            sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            if dialect == "postgresql":
                await conn.exec_driver_sql("SET jit = off")  # as on the log-search read pool
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


def _cell(r: Result, key: tuple[int, int]) -> str:
    cpu, wall = r.cpu.get(key), r.samples.get(key)
    return f"{_p(cpu, 50):.1f} / {_p(cpu, 95):.1f} ({_p(wall, 95):.0f})" if cpu else "–"


def _table(results: list[Result], dashboard: bool = False) -> list[str]:
    if dashboard:
        lines = ["| case | CPU p50 / p95 (wall p95) |", "|---|---:|"]
        return lines + [f"| {r.case.name} | {_cell(r, (1, 20))} |" for r in results]
    lines = [
        "| case | total | page 1, 20 | page 500, 20 | page 1, 100 | page 500, 100 | worst CPU p95 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        total = "" if r.total is None else f"{r.total:,}"
        worst = max(_p(v, 95) for v in r.cpu.values())
        lines.append(f"| {r.case.name} | {total} | " + " | ".join(_cell(r, k) for k in PAGES) + f" | {worst:.1f} |")
    return lines


def _worst(results: list[Result], cpu: bool = True) -> float:
    return max(_p(v, 95) for r in results for v in (r.cpu if cpu else r.samples).values())


def report(
    path: Path,
    args: argparse.Namespace,
    loads: dict[str, dict[str, float]],
    results: dict[str, dict[str, list[Result]]],
    stable: dict[str, list],
    explain: dict[str, list],
) -> None:
    mark_start, mark_end = marks(args.tag)
    loader = (
        f"through the writer's transaction script (`sinks.write_usage_logs`, {WRITER_BATCH:,} rows per transaction)"
        if args.loader == "writer"
        else "with COPY (PostgreSQL) / executemany (SQLite) into the 0001 schema, then the "
        "per-minute rollups rebuilt with one INSERT ... SELECT and the database migrated "
        "to head (the migrations build the indexes and rebuild the hourly and daily series "
        "and the log counts)"
    )
    lines = [
        mark_start,
        f"## {args.rows:,} rows ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        (
            f"Loaded {loader}. {args.runs} timed requests per cell after 2 warm-ups, end to end "
            "over HTTP on loopback. Cells: CPU time per request, p50 / p95 in ms (aigate's process, "
            "the client included, plus the PostgreSQL backends of the log-search pool, from "
            "/proc/<pid>/task/*/schedstat), and in brackets the wall-clock p95. "
            f"Load average during the run: {args.loadavg}. Machine: "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
            f"work, Python {platform.python_version()}; PostgreSQL with its default settings "
            "(the log-search pool sets plan_cache_mode=force_custom_plan and jit=off)."
        ),
        "",
    ]
    for backend, load in loads.items():
        lines.append(
            f"Load ({backend}): "
            + ", ".join(f"{k} {v:,.0f}" + ("" if k == "rows/s" else " s") for k, v in load.items())
            + "."
        )
    lines.append("")
    for backend, groups in results.items():
        lines += [f"### {backend}", ""]
        searches = groups["searches"]
        lines += [
            f"Filter combinations: worst CPU p95 over every cell {_worst(searches):.1f} ms "
            f"(worst wall p95 {_worst(searches, cpu=False):.0f} ms).",
            "",
        ]
        lines += _table(searches) + [""]
        lines += [
            f"Keyword searches: worst CPU p95 {_worst(groups['keywords']):.1f} ms "
            f"(worst wall p95 {_worst(groups['keywords'], cpu=False):.0f} ms).",
            "",
        ]
        lines += _table(groups["keywords"]) + [""]
        lines += _table(groups["dashboards"], dashboard=True) + [""]
        if stable.get(backend):
            lines += [
                f"Stability: each shape {STABILITY_RUNS} times on the pool, then `ANALYZE usage_logs`, "
                "then 20 more (page 1, per_page 20); CPU ms per request.",
                "",
                "| shape | runs 1-10 p95 / max | runs 11-50 p95 / max | after ANALYZE p95 / max |",
                "|---|---:|---:|---:|",
            ]
            for name, before, after in stable[backend]:
                lines.append(
                    f"| {name} | {_p(before[:10], 95):.1f} / {max(before[:10]):.1f} | "
                    f"{_p(before[10:], 95):.1f} / {max(before[10:]):.1f} | "
                    f"{_p(after, 95):.1f} / {max(after):.1f} |"
                )
            lines.append("")
    for backend, items in explain.items():
        lines += [f"### Plans: {backend}, {args.rows:,} rows", ""]
        for title, sql, text in items:
            lines += [f"**{title}**", "", "```sql", sql.strip(), "```", "", "```", text, "```", ""]
    lines.append(mark_end)
    block = "\n".join(lines)
    old = path.read_text() if path.exists() else ""
    if mark_start in old and mark_end in old:
        new = old[: old.index(mark_start)] + block + old[old.index(mark_end) + len(mark_end) :]
    else:
        new = (old or "# Log search speed\n\n") + "\n" + block + "\n"
    path.write_text(new)
    print(f"wrote {path}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loader", choices=["writer", "copy"], default="writer")
    parser.add_argument(
        "--replicate",
        type=int,
        default=1,
        help="copy loader on PostgreSQL: generate rows/N rows and insert N time-shifted copies",
    )
    parser.add_argument("--tag", default="1m", help="names the schema, the SQLite file and the report section")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per cell")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="time page 1 at per_page 20 and page 500 at per_page 100 only"
    )
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the tag's schema and SQLite file, and exit")
    parser.add_argument("--out", type=Path, default=HERE / "LOGS_RESULTS.md")
    args = parser.parse_args()

    work = WORK / args.tag
    # this run's log-search pool gets its own name, so its CPU meter counts only its backends
    READER_SETTINGS["application_name"] = f"aigate-log-search-bench-{args.tag}-{os.getpid()}"
    sqlite_path = work / "logs.db"
    schema = f"{PG_SCHEMA}_{args.tag}"
    if args.drop:
        fresh_sqlite(sqlite_path)
        if args.pg:
            await drop_pg_schema(args.pg, schema)
        return
    backends = {}
    if args.only != "postgres":
        backends["SQLite"] = f"sqlite:///{sqlite_path}"
    if args.only != "sqlite" and args.pg:
        backends["PostgreSQL"] = pg_url(args.pg, schema)

    stamp, saved_loads = work / "end_ms", work / "loads.json"
    loads: dict[str, dict[str, float]] = {}
    if args.skip_load:
        end_ms = int(stamp.read_text())
        loads = json.loads(saved_loads.read_text()) if saved_loads.exists() else {}
    else:
        end_ms = int(time.time() * 1000)
        work.mkdir(parents=True, exist_ok=True)
        stamp.write_text(str(end_ms))
        for backend, url in backends.items():
            print(f"loading {backend} ({args.loader}) ...", flush=True)
            if backend == "SQLite":
                fresh_sqlite(sqlite_path)
            else:
                await fresh_pg_schema(args.pg, schema)
            if args.loader == "writer":
                loads[backend] = await load_writer(url, args.rows, end_ms)
            elif backend == "SQLite":
                loads[backend] = await load_sqlite(sqlite_path, args.rows, end_ms)
            else:
                loads[backend] = await load_postgres(args.pg, schema, args.rows, end_ms, args.replicate)
            print("  ", loads[backend], flush=True)
            saved_loads.write_text(json.dumps(loads))
    if args.load_only:
        return

    now = end_ms
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, list[Result]]] = {}
    stable: dict[str, list] = {}
    for backend, url in backends.items():
        print(f"measuring {backend}", flush=True)
        request_id = await sample_request_id(url)
        results[backend] = await measure(
            url,
            {
                "searches": cases(now, request_id),
                "keywords": keyword_cases(now, request_id),
                "dashboards": dashboard_cases(now),
            },
            args.runs,
            args.quick,
        )
        shapes = [
            c
            for c in cases(now, request_id)
            if c.name
            in (
                "global: no filter (30 days)",
                "global: rare model + token + 30 days + error",
                "group: model_name + code_type=success",
            )
        ] + keyword_cases(now, request_id)[:1]
        print(f"stability {backend}", flush=True)
        stable[backend] = await stability(url, shapes)
    explain = {backend: await plans(url, now) for backend, url in backends.items()}
    args.loadavg = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores)"
    report(args.out, args, loads, results, stable, explain)


if __name__ == "__main__":
    asyncio.run(main())
