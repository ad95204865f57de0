"""What settling credits costs per call, measured in one quiet process (SPEC §12).

Each call runs what the App API runs around the upstream call, and nothing else (no
HTTP, no upstream, no records):

* ``reserve``: ``metering.reserve_call`` — a flat cost is taken whole; a usage-based cost
  counts the prompt with tiktoken (token-priced: the hold is prompt + ``max_tokens``) or
  takes the cost's ``hold`` (``per_used_amount``), and inserts the hold row;
* ``settle``: ``CreditMeter.settle`` — nothing for a flat cost; for a usage-based one the
  charge is priced from the call's usage and the settlement transaction runs (hold row
  deleted, the rest given back, ledger ``settle``).

Three cost forms: ``flat`` (``per_request: 1``), ``tokens`` (``per_1k_input_tokens`` /
``per_1k_output_tokens``, hold from ``max_tokens``) and ``amount`` (``per_used_amount``
with a ``hold``), on SQLite (default) or PostgreSQL (``--db``).

Two measurements:

* CPU per call (``time.process_time``: every thread of the process, so the SQLite thread
  counts), reserve and settle apart, in interleaved rounds (the forms' order rotates each
  round); medians and the range over rounds. ``--concurrency C`` runs the calls C at a
  time instead (what a loaded instance does: on SQLite, scripts that arrive together
  share one hop to the database thread); then only the total per call is reported;
* ``--callgrind``: instructions per call, from valgrind. Each form runs in its own process
  twice, with N and 2N calls after the same warm-up; (I(2N) - I(N)) / N removes start-up.
  Instruction counts do not depend on the machine's load.

    .venv/bin/python -m bench.settle                       # CPU per call, SQLite
    .venv/bin/python -m bench.settle --db postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python -m bench.settle --callgrind --calls 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

FORMS = ("flat", "tokens", "amount")
APP_ID = "BENCHSETTLE"
USER = "settler"
PROMPT = (
    "Summarise the following notes for a product meeting in three short bullet points, "
    "keeping every number exact and leaving out anything that is not a decision. "
) * 4
USAGE = {"input_tokens": 180, "output_tokens": 240}


def config_doc(db_url: str) -> dict:
    cost_tokens = {"asset": "credit", "per_1k_input_tokens": "0.5", "per_1k_output_tokens": "1.5"}
    return {
        "server": {"admin_key": "bench-admin-key-0123456789abcdef"},
        "database": {"url": db_url, "pool_size": 2},
        "models": [{"name": "gpt-4o-mini", "price": {"input_price": 0.15, "output_price": 0.6}}],
        "platforms": [
            {
                "id": "up",
                "type": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "k",
                "models": ["gpt-4o-mini"],
            }
        ],
        "apps": [
            {
                "id": APP_ID,
                "user_token_secret": "bench-settle-secret-0123456789abcdef",
                "assets": [{"name": "credit", "initial_quantity": 1_000_000_000, "precision": 2}],
                "strategies": [
                    {"name": "flat", "model": "gpt-4o-mini", "cost": {"asset": "credit", "per_request": 1}},
                    {"name": "tokens", "model": "gpt-4o-mini", "params": {"max_tokens": 400}, "cost": cost_tokens},
                    {
                        "name": "amount",
                        "model": "gpt-4o-mini",
                        "cost": {"asset": "credit", "per_used_amount": 1000, "hold": 5},
                    },
                ],
            }
        ],
    }


@dataclass
class Bench:
    services: object
    caller: object
    messages: list[dict] = field(default_factory=lambda: [{"role": "user", "content": PROMPT}])

    async def call(self, form: str) -> tuple[float, float]:
        """One reserve + settle; the CPU seconds of each."""
        from aigate.engine import metering
        from aigate.engine.calls import CreditMeter
        from aigate.engine.records import CallRecord
        from aigate.providers.base import Usage

        services, caller = self.services, self.caller
        strategy = caller.app.strategies[form]
        rid = services.ids.next()
        t0 = time.process_time()
        res = await metering.reserve_call(
            services,
            caller,
            form,
            strategy.cost,
            None,
            str(rid),
            model=strategy.model,
            messages=self.messages,
            max_tokens=strategy.params.get("max_tokens"),
        )
        t1 = time.process_time()
        record = CallRecord(rid, str(rid), caller.app.id, USER, "chat", form, "bench", 0, model=strategy.model)
        record.usage = Usage(**USAGE)
        await CreditMeter(services, res).settle(record)
        return t1 - t0, time.process_time() - t1


@contextlib.asynccontextmanager
async def opened(db_arg: str, warmup: int) -> AsyncIterator[Bench]:
    """Services on a fresh database (a SQLite file, or a private schema of the PostgreSQL
    server at ``db_arg``), every form warmed up."""
    from aigate.app import start_services, stop_services
    from aigate.auth.caller import Caller
    from aigate.config.loader import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        url, schema = _db_url(db_arg, tmp)
        if schema:
            await _schema(db_arg, schema, True)
        services = await start_services(parse_config(config_doc(url), env={}))
        try:
            # quiet: no background workers (job poller, hold leases, webhooks, retention) and
            # no config polling, whose work would grow with wall time, not with calls
            stoppers, services.stoppers = services.stoppers, []
            for stop in stoppers:
                await stop()
            await services.cache.stop()
            bench = Bench(services, Caller(services.snapshot.apps[APP_ID], USER, True))
            for form in FORMS:
                for _ in range(warmup):
                    await bench.call(form)
            yield bench
        finally:
            await stop_services(services)
            if schema:
                await _schema(db_arg, schema, False)


def _db_url(arg: str, tmp: str) -> tuple[str, str | None]:
    """A fresh database: a SQLite file, or a private schema of the PostgreSQL server."""
    if not arg:
        return f"sqlite:///{tmp}/settle.db", None
    schema = "bench_" + uuid.uuid4().hex[:10]
    return f"{arg}{'&' if '?' in arg else '?'}schema={schema}", schema


async def _schema(pg_url: str, schema: str, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"' if create else f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# --- CPU per call, interleaved rounds


async def cpu_rounds(
    db_arg: str, calls: int, rounds: int, warmup: int, concurrency: int
) -> dict[str, dict[str, list[float]]]:
    async with opened(db_arg, warmup) as bench:
        out: dict[str, dict[str, list[float]]] = {f: {"reserve": [], "settle": [], "total": []} for f in FORMS}
        for r in range(rounds):
            for form in FORMS[r % 3 :] + FORMS[: r % 3]:  # the order rotates: no form always first
                if concurrency > 1:
                    start = time.process_time()
                    for _ in range(calls // concurrency):
                        await asyncio.gather(*(bench.call(form) for _ in range(concurrency)))
                    done = calls // concurrency * concurrency
                    out[form]["total"].append((time.process_time() - start) / done * 1e6)
                    continue
                reserve = settle = 0.0
                for _ in range(calls):
                    a, b = await bench.call(form)
                    reserve += a
                    settle += b
                out[form]["reserve"].append(reserve / calls * 1e6)
                out[form]["settle"].append(settle / calls * 1e6)
                out[form]["total"].append((reserve + settle) / calls * 1e6)
        return out


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})" if values else "–"


def cpu_table(out: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| cost form | reserve µs CPU/call | settle µs CPU/call | reserve + settle | vs flat |",
        "|---|---|---|---|---|",
    ]
    flat = statistics.median(out["flat"]["total"])
    for form in FORMS:
        row = out[form]
        delta = statistics.median(row["total"]) - flat
        lines.append(
            f"| {form} | {_spread(row['reserve'])} | {_spread(row['settle'])} | {_spread(row['total'])} "
            f"| {delta:+.0f} µs ({delta / flat:+.0%}) |"
        )
    return "\n".join(lines)


# --- instructions per call (valgrind)


async def one_form(db_arg: str, form: str, count: int, warmup: int) -> None:
    """The process valgrind runs: warm up every form, then ``count`` calls of ``form``."""
    async with opened(db_arg, warmup) as bench:
        for _ in range(count):
            await bench.call(form)


def instructions(db_arg: str, form: str, count: int, warmup: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, "-m", "bench.settle", "--one", form, "--calls", str(count), "--warmup", str(warmup)]
    if db_arg:
        cmd += ["--db", db_arg]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if not found:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def callgrind_table(db_arg: str, calls: int, warmup: int) -> str:
    runs = [(form, n) for form in FORMS for n in (calls, 2 * calls)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # counts do not depend on the load
        counts = dict(zip(runs, pool.map(lambda run: instructions(db_arg, run[0], run[1], warmup), runs)))
    per_call = {}
    for form in FORMS:
        small, large = counts[form, calls], counts[form, 2 * calls]
        per_call[form] = (large - small) / calls
        print(f"{form}: I({calls})={small:,} I({2 * calls})={large:,} -> {per_call[form]:,.0f}/call", file=sys.stderr)
    lines = ["| cost form | instructions per call (reserve + settle) | vs flat |", "|---|---|---|"]
    for form in FORMS:
        delta = per_call[form] - per_call["flat"]
        lines.append(f"| {form} | {per_call[form]:,.0f} | {delta:+,.0f} ({delta / per_call['flat']:+.0%}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--calls", type=int, default=300, help="calls per form per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight at once")
    parser.add_argument("--callgrind", action="store_true", help="instructions per call under valgrind")
    parser.add_argument("--one", choices=FORMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        asyncio.run(one_form(args.db, args.one, args.calls, args.warmup))
        return
    load = os.getloadavg()
    if args.callgrind:
        print(callgrind_table(args.db, args.calls, args.warmup))
    else:
        rounds = cpu_rounds(args.db, args.calls, args.rounds, args.warmup, args.concurrency)
        print(cpu_table(asyncio.run(rounds)))
    print(
        f"\nload average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; at the end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
