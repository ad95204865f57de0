"""Console page times on a usage log of 1,000,000 rows (PostgreSQL).

Loads the log with the log-search bench's generator and bulk loader (COPY, then the
migrations to head, so 0010 backfills the per-user daily rollup as on an existing
deployment) into its own schema, serves aigate, signs in to the console and times every
page (and the dashboard's data request) over loopback HTTP; p50/p95 of repeated runs.
The schema is dropped at the end unless --keep.

    .venv/bin/python -m bench.console_pages                       # writes bench/CONSOLE_RESULTS.md
    .venv/bin/python -m bench.console_pages --rows 100000 --runs 5 --out /tmp/x.md
    .venv/bin/python -m bench.console_pages --skip-load --schema bench_logs_1m   # the log-search bench's data
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import time
from pathlib import Path

import aiohttp
import asyncpg
import uvicorn

from aigate.app import create_app
from aigate.config.loader import parse_config
from bench import logs_search as ls

SCHEMA = "bench_console"
ADMIN_KEY = "bench-admin-key-0123456789"
HERE = Path(__file__).parent


def _config(db_url: str) -> dict:
    return {
        "server": {"admin_key": ADMIN_KEY},
        "database": {"url": db_url},
        "logs": {"retention_days": 0},
        "models": [{"name": m} for m in ls.MODELS],
        "platforms": [{"id": "bench", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ls.MODELS}],
        "apps": [
            {
                "id": app,
                "user_token_secret": "bench-token-secret-0123456789-abcdefgh",
                "assets": [{"name": "ai_credit", "initial_quantity": 50}],
                "strategies": [{"name": s, "model": m, "system_prompt": "hi {{ .x }}"} for s, m in ls.STRATEGIES[app]],
            }
            for app in ls.APPS
        ],
    }


def pages(now: int) -> list[tuple[str, str]]:
    day = 86_400_000
    return [
        ("Dashboard (page)", "/console/dashboard"),
        (
            "Dashboard data: 24 h by hour",
            f"/api/dashboard?start_timestamp={now - day}&end_timestamp={now}&timespan=hour",
        ),
        (
            "Dashboard data: 7 d by hour",
            f"/api/dashboard?start_timestamp={now - 7 * day}&end_timestamp={now}&timespan=hour",
        ),
        (
            "Dashboard data: 30 d by day, one app",
            f"/api/dashboard?start_timestamp={now - 30 * day}&end_timestamp={now}&timespan=day&group=APPBENCH1",
        ),
        ("Logs, no filter", "/console/logs"),
        ("Logs, model filter", "/console/logs?model_name=model-07"),
        ("Logs, app + errors", "/console/logs?group=APPBENCH2&code_type=error"),
        ("Logs, user", "/console/logs?user=user-00042"),
        ("Logs, page 50", "/console/logs?page=50"),
        ("Logs, keyword (error text, 1% of rows)", "/console/logs?keyword=overloaded"),
        ("Logs, keyword (a model name, 5%), page 50", "/console/logs?keyword=model-07&page=50"),
        ("Log detail", "/console/logs/999000"),
        ("Users: one user", "/console/users?app=APPBENCH3&user=user-00042"),
        ("Users: newest users", "/console/users?app=APPBENCH3"),
        ("Strategies", "/console/strategies?app=APPBENCH1"),
        ("Platforms", "/console/platforms"),
        ("Keys", "/console/keys?app=APPBENCH1"),
        ("Playground", "/console/playground"),
        ("Audit", "/console/audit"),
    ]


async def signed_in(base: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(base + "/console/signin") as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
    async with http.post(
        base + "/console/signin", data={"csrf_token": token, "admin_key": ADMIN_KEY}, allow_redirects=False
    ) as r:
        assert r.status == 303
    return http


def _pct(samples: list[float], q: int) -> float:
    ordered = sorted(samples)
    return statistics.median(ordered) if q == 50 else ordered[max(0, int(len(ordered) * q / 100) - 1)]


async def measure(db_url: str, runs: int) -> list[tuple[str, float, float, float, float]]:
    cfg = parse_config(_config(db_url), env={})
    port = ls._free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    http = await signed_in(base)
    meter = ls.CpuMeter(db_url, every_pool=True)
    now = int(time.time() * 1000)
    out = []
    try:
        for name, path in pages(now):
            samples, cpu = [], []
            for i in range(runs + 1):
                if i == 1:
                    await meter.refresh()  # the pools' connections exist by now
                before = meter.read()
                started = time.perf_counter()
                async with http.get(base + path) as r:
                    await r.read()
                    assert r.status == 200, (path, r.status)
                if i:  # the first request warms caches and connections
                    samples.append((time.perf_counter() - started) * 1000)
                    cpu.append((meter.read() - before) / 1e6)
            out.append((name, _pct(samples, 50), _pct(samples, 95), _pct(cpu, 50), _pct(cpu, 95)))
            print(
                f"{name:40s} wall p50 {out[-1][1]:7.1f} p95 {out[-1][2]:7.1f}  CPU p95 {out[-1][4]:6.1f} ms", flush=True
            )
    finally:
        await http.close()
        server.should_exit = True
        await task
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--postgres", default=ls.DEFAULT_PG)
    parser.add_argument("--out", type=Path, default=HERE / "CONSOLE_RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the schema for another run")
    parser.add_argument("--skip-load", action="store_true", help="measure the schema as it is (implies --keep)")
    parser.add_argument(
        "--schema", default=SCHEMA, help="our own by default: the log-search bench may run at the same time"
    )
    args = parser.parse_args()
    # this run's log-search pool gets its own name, so the CPU meter counts only its backends
    ls.READER_SETTINGS["application_name"] = f"aigate-console-bench-{os.getpid()}"
    end_ms = int(time.time() * 1000)
    loads = {} if args.skip_load else await ls.load_postgres(args.postgres, args.schema, args.rows, end_ms)
    for step, seconds in loads.items():
        print(f"load: {step}: {seconds:.1f} s", flush=True)
    load_before = os.getloadavg()[0]
    try:
        results = await measure(ls.pg_url(args.postgres, args.schema), args.runs)
    finally:
        if not (args.keep or args.skip_load):
            conn = await asyncpg.connect(args.postgres)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
            await conn.close()
    lines = [
        "# Console page times",
        "",
        f"{args.rows:,} usage log rows over 30 days on PostgreSQL (the log-search bench's data: 5 apps, "
        "20 models, 10,000 users), aigate on one process, client on loopback in the same process. "
        "Time to the last byte of each page (wall) and the CPU time it took (this process, server and "
        "client, plus every PostgreSQL backend connected from it), "
        f"p50 / p95 of {args.runs} runs after one warm-up; "
        f"{platform.processor() or platform.machine()}, {platform.python_version()}; load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores).",
        "",
        "| page | wall p50 / p95 ms | CPU p50 / p95 ms |",
        "|---|---:|---:|",
        *[f"| {n} | {w50:.1f} / {w95:.1f} | {c50:.1f} / {c95:.1f} |" for n, w50, w95, c50, c95 in results],
        "",
        "Loading: " + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items()),
        "",
        f"Command: `.venv/bin/python -m bench.console_pages` (`--rows {args.rows} --runs {args.runs}`).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
