"""CPU per request of this checkout against another, in interleaved pairs of short rounds.

    .venv/bin/python -m bench.ab --other /path/to/checkout --path relay
    .venv/bin/python -m bench.ab --other /path/to/checkout --path app --pairs 14 --seconds 4

Both gateways (each from its own .venv, the benchmark's configuration, the gateway core)
run against one simulator at 0 ms. Each pair is one wrk round on each gateway, with the
order alternating from pair to pair. The round measures the gateway's CPU seconds per
1,000 requests and its req/s. On a machine whose rounds vary by ±10 %, the figure that
means something is the median, over the pairs, of each pair's ratio (this / other):
printed with its range, and the medians of each side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import procs as P
from bench import stack, wrk
from bench.c1_tail import one, start_gateway
from bench.run import APP_BODY, APP_PATH, CHAT_PATH, RAW_BODY, USERS, json_headers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", type=Path, required=True, help="the checkout to compare with (with its own .venv)")
    ap.add_argument("--path", choices=("app", "relay"), default="relay")
    ap.add_argument("--pairs", type=int, default=14)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args(argv)
    if args.path == "app":
        url_path, body, key, target = APP_PATH, APP_BODY, stack.SERVER_KEY, "/"
    else:
        url_path, body, key, target = CHAT_PATH, RAW_BODY, stack.RELAY_KEY, CHAT_PATH
    binary = wrk.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="aigate-ab-"))
    processes = P.Processes(work, pin=P.pinning_available())
    try:
        sim_port = P.free_port()
        stack.start_simulator(processes, sim_port, stack.Profile("0ms", 0, 50, 0))
        sim_url = f"http://127.0.0.1:{sim_port}"
        gateways = {}
        for name, checkout in (("this", stack.REPO), ("other", args.other.resolve())):
            proc, url = start_gateway(processes, name, checkout, work / name, sim_url, None)
            script = wrk.write_script(
                work / name / "ab.lua", url_path=url_path, body=body, headers=json_headers(key), users=USERS
            )
            wrk.run(binary, url + target, script, connections=4, duration_s=3)  # warm
            gateways[name] = (proc, url + target, script)
        ratios, cpu, rps = [], {"this": [], "other": []}, {"this": [], "other": []}
        for pair in range(args.pairs):
            for name in ("this", "other") if pair % 2 == 0 else ("other", "this"):
                proc, url, script = gateways[name]
                res = one(binary, url, script, args.connections, args.seconds, proc.pid)
                cpu[name].append(res["cpu_s_per_1k"])
                rps[name].append(res["rps"])
            ratios.append(cpu["this"][-1] / cpu["other"][-1])
            print(
                f"pair {pair + 1}: CPU per 1,000 this {cpu['this'][-1]:.3f} s, other {cpu['other'][-1]:.3f} s",
                flush=True,
            )
        print(
            f"{args.path}: CPU per request this / other, median of {args.pairs} pairs "
            f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}); "
            f"median CPU per 1,000 this {statistics.median(cpu['this']):.3f} s, other {statistics.median(cpu['other']):.3f} s; "
            f"median req/s this {statistics.median(rps['this']):,.0f}, other {statistics.median(rps['other']):,.0f}"
        )
    finally:
        processes.stop_all()
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
