"""CPU per delivered stream event of this checkout against another, in interleaved pairs.

    .venv/bin/python -m bench.streams_ab --other /path/to/checkout --path relay
    .venv/bin/python -m bench.streams_ab --other /path/to/checkout --path app --pairs 8
    .venv/bin/python -m bench.streams_ab --other bare --path app   # against the bare proxy

One simulator (``chunks`` deltas ``interval`` ms apart) on the load core, both gateways
(each from its own .venv, the benchmark's configuration) on the gateway core, one at a
time. Each pair runs ``streams`` concurrent streams (``bench.streams.measure``: the load
side is ``bench/stream_load.py``) through each gateway, the order alternating from pair
to pair, and takes the gateway's CPU seconds per 1,000 delivered events. Rounds of the
same gateway vary by ±10 % on a shared machine, so the figure that means something is
the median, over the pairs, of each pair's ratio (this / other), printed with its range.
``--other bare`` takes the bare reference proxy (``bench/bare_proxy.py``, relaying the same
upstream stream) as the other side: the paired form of the full run's "CPU per event
against the bare proxy".
Each round also records the gateway's RSS growth per open stream; ``--fresh`` starts
both gateways anew before every round, so that figure is not hidden by memory the
allocator kept from the round before.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench import procs as P
from bench import stack
from bench.c1_tail import start_gateway
from bench.run import APP_BODY, APP_STREAM_PATH, CHAT_PATH, RAW_STREAM_BODY, Call, json_headers
from bench.streams import REPLY_CHARS, measure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--other", type=Path, required=True, help="the checkout to compare with (with its own .venv), or bare"
    )
    ap.add_argument("--path", choices=("app", "relay"), default="relay")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--streams", type=int, default=300)
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--interval-ms", type=int, default=50)
    ap.add_argument("--ramp-s", type=float, default=2.0)
    ap.add_argument("--out", type=Path, help="write the rounds here as JSON")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="start each gateway anew for every round: RSS per stream from a process that held no streams before",
    )
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pin = P.pinning_available()
    run_dir = Path(tempfile.mkdtemp(prefix="streams-ab-", dir=stack.WORK))
    procs = P.Processes(run_dir, pin=pin)
    try:
        sim_port = P.free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        profile = stack.Profile("streams", 0, args.chunks, args.interval_ms)
        sim = stack.start_simulator(procs, sim_port, profile, reply_chars=REPLY_CHARS)
        bare = str(args.other) == "bare"
        checkouts = {"this": stack.REPO, "other": stack.REPO if bare else args.other.resolve()}

        def start(name: str, attempt: int) -> tuple[Call, P.Proc]:
            if bare and name == "other":
                proc, url = stack.start_bare(procs, sim_url)
                return Call(url, CHAT_PATH, json_headers(stack.RELAY_KEY), RAW_STREAM_BODY), proc
            proc, url = start_gateway(procs, name, checkouts[name], run_dir / f"{name}-{attempt}", sim_url, None)
            if args.path == "app":
                return Call(url, APP_STREAM_PATH, json_headers(stack.SERVER_KEY), APP_BODY), proc
            return Call(url, CHAT_PATH, json_headers(stack.RELAY_KEY), RAW_STREAM_BODY), proc

        gateways = {name: start(name, 0) for name in checkouts}
        rounds: list[dict[str, float]] = []
        for pair in range(args.pairs):
            figures = {}
            for name in ("this", "other") if pair % 2 == 0 else ("other", "this"):
                if args.fresh and pair:
                    procs.stop(gateways[name][1])
                    gateways[name] = start(name, pair)
                call, proc = gateways[name]
                r = measure(call, proc.pid, sim.pid, args.streams, args, pin, run_dir)
                if r["error_count"]:
                    raise RuntimeError(f"{name}: {r['error_count']} streams failed")
                figures[name] = round(1e6 * r["meter"]["cpu_s"]["gateway"] / r["events"], 2)
                figures[f"{name}_rss_kb"] = round((r["rss_peak_kb"] - r["rss_start_kb"]) / args.streams, 1)
                time.sleep(1)  # sockets closed, timers settled
            figures["ratio"] = round(figures["this"] / figures["other"], 3)
            rounds.append(figures)
            print(
                f"pair {pair + 1}: this {figures['this']} other {figures['other']} ms / 1k events, "
                f"ratio {figures['ratio']}; RSS KB / stream this {figures['this_rss_kb']} "
                f"other {figures['other_rss_kb']}",
                flush=True,
            )
    finally:
        procs.stop_all()
    ratios = [r["ratio"] for r in rounds]
    summary = {
        "path": args.path,
        "streams": args.streams,
        "chunks": args.chunks,
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "this_median": statistics.median(r["this"] for r in rounds),
        "other_median": statistics.median(r["other"] for r in rounds),
        "this_rss_kb_median": statistics.median(r["this_rss_kb"] for r in rounds),
        "other_rss_kb_median": statistics.median(r["other_rss_kb"] for r in rounds),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
