"""The App API's added latency at concurrency 1, over many requests and interleaved rounds.

    .venv/bin/python -m bench.c1_tail                      # 3 rounds of >= 10,000 requests
    .venv/bin/python -m bench.c1_tail --other /path/to/checkout   # A/B against another build
    .venv/bin/python -m bench.c1_tail --db postgresql://postgres@127.0.0.1:5432/test?schema=c1

One simulator (0 ms profile) on the load core, each gateway on the gateway core with the
benchmark's configuration (``bench.stack.aigate_config``: SQLite in WAL mode unless
``--db``). Every round runs wrk with one connection against direct (8 s) and then each gateway
for ``--seconds`` (at least 10,000 requests at the App API's c=1 rate; the order
reversed on every other round), and
records p50/p99/p99.9/max, the requests per second, the gateway's CPU seconds per 1,000
requests and the size of its SQLite WAL file at the end of the round. The summary is
the median over rounds with the min-max spread; "added" subtracts direct's figure of
the same round. ``--steady N`` also runs N concurrent connections for 10 s (throughput with the same
bookkeeping), interleaved the same way. Each round first runs ``bench.cpu_floor`` on the
gateway's core: how much this machine stretches the slowest 1 % of a fixed piece of work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import procs as P
from bench import stack, wrk
from bench.run import APP_BODY, APP_PATH, CHAT_PATH, RAW_BODY, USERS, json_headers


def start_gateway(processes: P.Processes, name: str, checkout: Path, run_dir: Path, sim_url: str, db: str | None):
    """aigate from ``checkout`` (its own .venv) with the benchmark's configuration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port = P.free_port()
    cfg = stack.aigate_config(run_dir / "aigate.db", port, sim_url)
    if db:
        cfg["database"]["url"] = db
    cfg_path = run_dir / "aigate.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    binary = checkout / ".venv" / "bin" / "aigate"
    argv = [str(binary), "serve", "--config", str(cfg_path), "--log-level", "WARNING"]
    proc = processes.start(name, argv, cpu=P.GATEWAY_CPU, cwd=run_dir)
    url = f"http://127.0.0.1:{port}"
    P.wait_http(proc, f"{url}/healthz", timeout=60, ok=lambda s: s == 200)
    return proc, url


def wal_bytes(run_dir: Path) -> int | None:
    wal = run_dir / "aigate.db-wal"
    return wal.stat().st_size if wal.exists() else None


def one(binary: str, url: str, script: Path, connections: int, seconds: float, pid: int | None) -> dict:
    cpu0 = P.cpu_seconds(pid) if pid else 0.0
    result = wrk.run(binary, url, script, connections=connections, duration_s=seconds)
    if pid:
        result["cpu_s_per_1k"] = round((P.cpu_seconds(pid) - cpu0) / max(result["requests"], 1) * 1000, 3)
    result["loadavg"] = os.getloadavg()[0]
    return result


def cpu_floor() -> dict:
    """``bench.cpu_floor`` on the gateway's core, while the gateways idle."""
    argv = [sys.executable, "-m", "bench.cpu_floor", "--cpu", str(P.GATEWAY_CPU), "--seconds", "8"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=stack.REPO).stdout
    return json.loads(out)


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20, help="seconds per target per round (>= 10,000 requests)")
    ap.add_argument("--other", type=Path, help="another checkout (with its own .venv) to measure side by side")
    ap.add_argument("--db", help="database URL instead of a fresh SQLite file (both gateways share it)")
    ap.add_argument("--steady", type=int, default=0, help="also measure N concurrent connections")
    ap.add_argument("--out", type=Path, help="write the raw figures here as JSON")
    args = ap.parse_args(argv)

    binary = wrk.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="aigate-c1-"))
    processes = P.Processes(work, pin=P.pinning_available())
    gateways: dict[str, tuple] = {}
    try:
        sim_port = P.free_port()
        stack.start_simulator(processes, sim_port, stack.Profile("0ms", 0, 50, 0))
        sim_url = f"http://127.0.0.1:{sim_port}"
        checkouts = {"aigate": stack.REPO}
        if args.other:
            checkouts["other"] = args.other.resolve()
        for name, checkout in checkouts.items():
            run_dir = work / name
            proc, url = start_gateway(processes, name, checkout, run_dir, sim_url, args.db)
            script = wrk.write_script(
                run_dir / "app.lua",
                url_path=APP_PATH,
                body=APP_BODY,
                headers=json_headers(stack.SERVER_KEY),
                users=USERS,
            )
            gateways[name] = (proc, url, script, run_dir)
        direct = wrk.write_script(
            work / "direct.lua",
            url_path=CHAT_PATH,
            body=RAW_BODY,
            headers=json_headers(stack.SIM_KEY),
            users=0,
        )
        for _, url, script, _ in gateways.values():  # warm: imports, caches, the first WAL pages
            wrk.run(binary, url + "/", script, connections=4, duration_s=3)

        rounds: list[dict] = []
        names = list(gateways)
        for r in range(args.rounds):
            order = ["direct", *names] if r % 2 == 0 else [*reversed(names), "direct"]
            figures: dict[str, dict] = {"floor": cpu_floor()}
            print(f"round {r + 1} floor on the gateway core: {figures['floor']}", flush=True)
            for name in order:
                conns = [1] + ([args.steady] if args.steady else [])
                for c in conns:
                    if name == "direct":
                        res = one(binary, sim_url + CHAT_PATH, direct, c, min(args.seconds, 8), None)
                    else:
                        proc, url, script, run_dir = gateways[name]
                        res = one(binary, url + "/", script, c, args.seconds if c == 1 else 10, proc.pid)
                        res["wal_bytes"] = wal_bytes(run_dir)
                    figures[f"{name}@c{c}"] = res
                    print(
                        f"round {r + 1} {name} c={c}: {res['requests']} req, {res['rps']:.0f} req/s, "
                        f"p50 {res['latency_ms']['p50']:.2f} p99 {res['latency_ms']['p99']:.2f} "
                        f"max {res['latency_ms']['max']:.1f} ms, cpu/1k {res.get('cpu_s_per_1k', '-')} s, "
                        f"WAL {res.get('wal_bytes', '-')} B, load {res['loadavg']:.2f}",
                        flush=True,
                    )
            rounds.append(figures)

        report: dict = {"rounds": rounds, "summary": {}}
        report["summary"]["floor"] = {
            key: summary([rd["floor"][key] for rd in rounds]) for key in ("p50_ms", "p99_ms", "p99_over_p50")
        }
        for name in names:
            base = [rd["direct@c1"]["latency_ms"] for rd in rounds]
            mine = [rd[f"{name}@c1"]["latency_ms"] for rd in rounds]
            report["summary"][name] = {
                "added_p50_ms": summary([m["p50"] - b["p50"] for m, b in zip(mine, base, strict=True)]),
                "added_p99_ms": summary([m["p99"] - b["p99"] for m, b in zip(mine, base, strict=True)]),
                "p99_ms": summary([m["p99"] for m in mine]),
                "c1_rps": summary([rd[f"{name}@c1"]["rps"] for rd in rounds]),
                "cpu_s_per_1k_c1": summary([rd[f"{name}@c1"]["cpu_s_per_1k"] for rd in rounds]),
            }
            if args.steady:
                key = f"{name}@c{args.steady}"
                report["summary"][name][f"rps_c{args.steady}"] = summary([rd[key]["rps"] for rd in rounds])
                report["summary"][name][f"p99_ms_c{args.steady}"] = summary(
                    [rd[key]["latency_ms"]["p99"] for rd in rounds]
                )
                report["summary"][name][f"cpu_s_per_1k_c{args.steady}"] = summary(
                    [rd[key]["cpu_s_per_1k"] for rd in rounds]
                )
            report["summary"][name]["peak_rss_mb"] = round(P.memory_kb(gateways[name][0].pid)["hwm_kb"] / 1024, 1)
        print(json.dumps(report["summary"], indent=2))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
    finally:
        processes.stop_all()
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
