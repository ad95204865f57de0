"""How steady one core of this machine is: a fixed piece of CPU work, timed many times.

    .venv/bin/python -m bench.cpu_floor [--cpu 0] [--seconds 8]

The same pure-Python loop (about 0.7 ms on a quiet core of the benchmark machine) runs
over and over on the given core, with a 0.5 ms sleep between runs, as a gateway at
concurrency 1 alternates work and waiting. Its p99 against its p50 is the floor of any
tail figure on that core: work that does not vary at all still takes that much longer
in the slowest 1 % of runs (other tenants of the host, frequency changes, interrupts).
``bench.c1_tail`` runs it in every round, on the gateway's core while the gateways idle.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

ITERATIONS = 12_000


def task() -> int:
    total = 0
    for i in range(ITERATIONS):
        total += i * i
    return total


def measure(seconds: float) -> dict:
    for _ in range(200):  # warm: the interpreter's caches, the core's frequency
        task()
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        task()
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.0005)
    times.sort()
    n = len(times)
    p50, p99 = times[n // 2], times[int(n * 0.99)]
    return {"runs": n, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "p99_over_p50": round(p99 / p50, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=int, default=0, help="the core to run on")
    ap.add_argument("--seconds", type=float, default=8)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(measure(args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
