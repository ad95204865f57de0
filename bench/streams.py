"""``make bench-streams``: open streams. N concurrent long-lived streams (the simulator
sends ``chunks`` deltas ``interval`` ms apart) through aigate's App API stream, aigate's
relay, the bare reference proxy, LiteLLM and direct to the simulator, one N at a time.

    python -m bench.streams                  # full run (~8 min): bench/STREAMS.md, streams.png, streams.json
    python -m bench.streams --quick          # smoke run (~2 min): bench/.work/quick-streams/
    python -m bench.streams --production --postgres postgresql://... --redis redis://...

Method and figures: bench/README.md, "Open streams".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs as P
from bench import stack
from bench.idp import IdentityProvider
from bench.run import (
    APP_BODY,
    APP_STREAM_PATH,
    CHAT_PATH,
    RAW_STREAM_BODY,
    USERS,
    Call,
    json_headers,
    machine_info,
    probe,
)

GATEWAYS = ("direct", "bare", "aigate", "litellm")
ORDER = ("aigate-app", "aigate-relay", "bare", "litellm", "direct")
LABELS = {
    "aigate-app": "aigate App API stream",
    "aigate-relay": "aigate relay stream",
    "bare": "bare proxy",
    "litellm": "LiteLLM",
    "direct": "direct",
}
REPLY_CHARS = 1000  # 200 deltas of 5 characters: about a token each
CLIENT_STREAM_PATH = "/bp/ai/chat/stream"  # the App API's client route (a user token)
# --production: edge limits on, checked in Redis on every client call, set above what the
# run sends (one IP, up to a few streams per user and level) so they never refuse
EDGE_LIMITS = {"per_user_rpm": 600, "per_ip_rpm": 1_000_000, "max_concurrent_streams_per_user": 16}


def spread_levels(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(x) for x in text.split(",") if x.strip()}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.streams", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="N = 100, 500; 40 chunks (smoke run)")
    ap.add_argument("--only", default=",".join(GATEWAYS), help="gateways (direct always runs)")
    ap.add_argument("--levels", type=spread_levels, help="the N ladder, e.g. 100,500,1000,2000")
    ap.add_argument("--chunks", type=int, help="deltas per stream (default 200; quick 40)")
    ap.add_argument("--interval-ms", type=int, default=50, help="between deltas")
    ap.add_argument("--ramp-s", type=float, default=2.0, help="the N streams start over this many seconds")
    ap.add_argument("--out", type=Path, help="output folder (default bench/, quick: bench/.work/quick-streams)")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument(
        "--production",
        action="store_true",
        help="aigate as in production: PostgreSQL (--postgres), Redis (--redis), usage-based credits, "
        "App API streams with identity-provider user tokens under edge limits",
    )
    ap.add_argument("--postgres", default=os.environ.get("AIGATE_BENCH_POSTGRES_URL", ""))
    ap.add_argument("--redis", default=os.environ.get("AIGATE_BENCH_REDIS_URL", ""))
    args = ap.parse_args(argv)
    args.only = {x.strip() for x in args.only.split(",") if x.strip()} | {"direct"}
    if args.levels is None:
        args.levels = (100, 500) if args.quick else (100, 250, 500, 1000, 1500, 2000)
    if args.chunks is None:
        args.chunks = 40 if args.quick else 200
    if args.production and not args.postgres:
        ap.error("--production needs --postgres URL (or AIGATE_BENCH_POSTGRES_URL)")
    return args


# --- one measurement -------------------------------------------------------------------


def measure(call: Call, pid: int, sim_pid: int, n: int, args, pin: bool, run_dir: Path) -> dict:
    """N streams at once through one target; the gateway's CPU, its RSS while they are
    open, and what the load side (client and simulator) spent."""
    spec = run_dir / "stream-spec.json"  # a file: a thousand user tokens do not fit in one argument
    spec.write_text(call.spec())
    argv = [
        sys.executable,
        "-m",
        "bench.stream_load",
        "--spec",
        f"@{spec}",
        "--streams",
        str(n),
        "--ramp",
        str(args.ramp_s),
        "--min-events",
        str(args.chunks),
    ]
    if pin:
        argv = ["taskset", "-c", str(P.LOAD_CPU), *argv]
    rss0 = P.memory_kb(pid)["rss_kb"]
    meter = P.Meter({"gateway": pid, "simulator": sim_pid}).start()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=stack.REPO)
    peak = rss0
    deadline = time.monotonic() + args.ramp_s + args.chunks * args.interval_ms / 1000 * 4 + 120
    while proc.poll() is None:
        peak = max(peak, P.memory_kb(pid)["rss_kb"])
        if time.monotonic() > deadline:
            proc.kill()
            break
        time.sleep(0.25)
    out, err = proc.communicate()
    metered = meter.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.stream_load failed ({proc.returncode}): {err[-1500:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["meter"] = metered
    res["rss_start_kb"] = rss0
    res["rss_peak_kb"] = peak
    return res


# --- the run ---------------------------------------------------------------------------


def start(args, run_dir: Path, procs: P.Processes, say) -> tuple[dict, dict, dict]:
    """The simulator and the gateways; the targets (key -> Call) that answer; pids."""
    sim_port = P.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = stack.start_simulator(
        procs,
        sim_port,
        stack.Profile("streams", 0, args.chunks, args.interval_ms),
        reply_chars=REPLY_CHARS,
    )
    pids = {"direct": sim.pid}
    sim_h = json_headers(stack.SIM_KEY)
    calls = {"direct": Call(sim_url, CHAT_PATH, sim_h, RAW_STREAM_BODY)}
    left_out = {}
    if "bare" in args.only:
        bare, url = stack.start_bare(procs, sim_url)
        pids["bare"] = bare.pid
        calls["bare"] = Call(url, CHAT_PATH, sim_h, RAW_STREAM_BODY)
    if "aigate" in args.only:
        idp = IdentityProvider() if args.production else None
        proc, url = stack.start_aigate(
            procs,
            run_dir,
            sim_url,
            "tokens" if args.production else "flat",
            database_url=args.postgres if args.production else "",
            redis_url=args.redis if args.production else "",
            app_extra={"user_tokens": [idp.issuer()], "rate_limits": EDGE_LIMITS} if idp else None,
        )
        pids["aigate-app"] = pids["aigate-relay"] = proc.pid
        if idp:  # as a phone would call it: the client route with its identity provider's token
            tokens = tuple(idp.token(f"bench-u{i}") for i in range(USERS))
            calls["aigate-app"] = Call(url, CLIENT_STREAM_PATH, json_headers(tokens[0]), APP_BODY, tokens)
        else:
            calls["aigate-app"] = Call(url, APP_STREAM_PATH, json_headers(stack.SERVER_KEY), APP_BODY)
        calls["aigate-relay"] = Call(url, CHAT_PATH, json_headers(stack.RELAY_KEY), RAW_STREAM_BODY)
    if "litellm" in args.only:
        try:
            binary = stack.ensure_litellm()
            proc, url = stack.start_litellm(procs, run_dir, sim_url, binary)
            pids["litellm"] = proc.pid
            calls["litellm"] = Call(url, CHAT_PATH, json_headers(stack.LITELLM_KEY), RAW_STREAM_BODY)
        except RuntimeError as exc:
            left_out["litellm"] = str(exc)[:300]
            say(f"LiteLLM left out: {exc}")
    for key in list(calls):
        status = probe(calls[key], True)
        if status != "ok":
            left_out[key] = status
            say(f"{key} left out: {status}")
            del calls[key]
    return calls, pids, left_out


def run(args, run_dir: Path, procs: P.Processes, pin: bool, say) -> dict:
    calls, pids, left_out = start(args, run_dir, procs, say)
    keys = [k for k in ORDER if k in calls]
    results: dict = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if args.quick else "full",
            "configuration": "production-like" if args.production else "default",
            "machine": machine_info(),
            "levels": list(args.levels),
            "chunks": args.chunks,
            "interval_ms": args.interval_ms,
            "ramp_s": args.ramp_s,
            "reply_chars": REPLY_CHARS,
            "users": USERS,
            "pinned": pin,
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "left_out": left_out,
            "labels": {k: LABELS[k] for k in keys},
        },
        "levels": {},
    }
    failed: set[str] = set()
    for index, n in enumerate(args.levels):
        order = keys if index % 2 == 0 else list(reversed(keys))
        say(f"N = {n}: {', '.join(order)}  (load average {os.getloadavg()[0]:.2f})")
        block = results["levels"][str(n)] = {"load_avg": os.getloadavg()[0]}
        for key in order:
            if key in failed and key != "direct":
                continue
            try:
                r = measure(calls[key], pids[key], pids["direct"], n, args, pin, run_dir)
            except (RuntimeError, ValueError) as exc:
                say(f"  {key}: measurement failed: {exc}")
                block[key] = {"error": str(exc)[:2000]}
                failed.add(key)
                continue
            block[key] = r
            m = r["meter"]
            say(
                f"  {key:13} TTFB p50 {r['ttfb_ms']['p50']} p99 {r['ttfb_ms']['p99']} ms, gap p99 "
                f"{r['gap_ms']['p99']} ms, errors {r['error_count']}, gw cpu {m['cpu_s']['gateway']} s, "
                f"sim {m['cpu_pct']['simulator']}%, client {r['client_cpu_pct']}%, cores {m['core_busy_pct']}"
            )
            bad = r["error_count"] > 0.1 * n or (r["ttfb_ms"]["p99"] or 0) > 10_000 or not r["completed"]
            if bad and key != "direct":  # far past its knee: the next N says nothing more
                failed.add(key)
            time.sleep(1)  # sockets closed, timers settled
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.out or (stack.WORK / "quick-streams" if args.quick else stack.REPO / "bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    stack.WORK.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="streams-", dir=stack.WORK))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every process started
    pin = P.pinning_available() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {P.LOAD_CPU})
    procs = P.Processes(run_dir, pin=pin)
    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {msg}", flush=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 0
    try:
        results = run(args, run_dir, procs, pin, say)
        results["meta"]["elapsed_s"] = round(time.monotonic() - started)
    except KeyboardInterrupt:
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        procs.stop_all()
    if code:
        print(f"interrupted; logs kept in {run_dir}", flush=True)
        return code
    from bench.streams_report import write_outputs

    for path in write_outputs(results, out_dir, production=args.production):
        say(f"wrote {path}")
    if not args.keep_work:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
