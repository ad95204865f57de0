"""CPU seconds the batched writer spends per logged call on SQLite, in isolation.

    .venv/bin/python -m bench.writer_cpu [--calls 20000] [--rate 1000]

Feeds the writer what one App API chat call leaves (a usage-log row, an AI request
record in two states, a user row) at ``--rate`` calls per second for ``--calls`` calls,
waits until every row is committed and the writer's upkeep (the keyword index) has
caught up, and prints the process's CPU seconds (every thread: the
event loop and the database thread) per 1,000 calls, with the load average. No HTTP,
no upstream: only the write path, so two checkouts can be compared on one machine
(``PYTHONPATH=/other/checkout .venv/bin/python -m bench.writer_cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid

import aigate
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.sinks import register_sinks
from aigate.store.writer import BatchWriter


def call_rows(i: int, now: int) -> list[tuple[str, dict]]:
    request_id = uuid.uuid4().hex[:24]
    log = dict(
        request_id=request_id,
        created_ms=now,
        request_ms=now,
        code=200,
        endpoint="/bp/server/user/{user}/ai/chat",
        app_id="APPBENCH",
        model="gpt-4o-mini",
        user=f"bench-u{i % 1000}",
        token_name="bench",
        metadata={"strategy": "free-normal"},
        input_tokens=30,
        output_tokens=12,
        total_tokens=42,
        price={"input_price": 0.15, "output_price": 0.6},
        used_amount="0.000012",
    )
    record = dict(
        request_id=request_id,
        app_id="APPBENCH",
        user_id=f"bench-u{i % 1000}",
        from_appserver=True,
        module="chat",
        strategy="free-normal",
        status="done",
        created_ms=now,
        updated_ms=now,
    )
    user = {"app_id": "APPBENCH", "user_id": log["user"], "created_ms": now}
    return [("usage_log", log), ("ai_request", record), ("user", user)]


async def run(calls: int, rate: float) -> dict:
    folder = tempfile.mkdtemp(prefix="aigate-writer-cpu-")
    engine = create_engine(f"sqlite:///{folder}/aigate.db")
    await upgrade(engine)
    try:
        writer = BatchWriter(engine, journal_dir=f"{folder}/journal")
    except TypeError:  # a writer without a journal
        writer = BatchWriter(engine)
    register_sinks(writer)
    writer.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    for i in range(calls):
        now = int(time.time() * 1000)
        for kind, row in call_rows(i, now):
            try:
                await writer.put(kind, row)
            except KeyError:  # a kind this checkout does not write
                pass
        target = wall0 + (i + 1) / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await writer.flush()
    await asyncio.sleep(1.0)  # the upkeep after the last flush
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    await writer.stop()
    await engine.dispose()
    return {
        "checkout": os.path.dirname(os.path.dirname(aigate.__file__)),
        "calls": calls,
        "rate": rate,
        "cpu_s_per_1k_calls": round(cpu / calls * 1000, 4),
        "wall_s": round(wall, 1),
        "loadavg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.calls, args.rate))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
