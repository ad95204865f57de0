"""``make bench``: aigate against LiteLLM's proxy, a bare reference proxy and
direct-to-simulator, on this machine, in one run. See bench/README.md for the method.

    python -m bench.run                      # full run (~12 min), writes bench/RESULTS.md ...
    python -m bench.run --quick              # smoke run (~3 min), writes bench/.work/quick/
    python -m bench.run --only aigate,bare --scenarios a,c
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench import procs as P
from bench import stack, wrk
from bench.report import write_outputs

GATEWAYS = ("direct", "bare", "aigate", "litellm")
SCENARIOS = ("a", "b", "c")
USERS = 1000  # user ids bench-u0 .. bench-u999, round-robin per request

APP_BODY = (
    b'{"strategy": "free-normal", "messages": [{"role": "user", "content": "hi"}], '
    b'"parameters": {"example_string": "x", "example_object": {"key": "k", "key2": "v"}}}'
)
RAW_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
RAW_STREAM_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
CHAT_PATH = "/v1/chat/completions"
APP_PATH = "/bp/server/user/{user}/ai/chat"
APP_STREAM_PATH = "/bp/server/user/{user}/ai/chat/stream"


@dataclass(frozen=True)
class Plan:
    """Durations (seconds) and repetitions of one run."""

    rounds: int
    step_s: float  # one wrk step of the throughput ladder
    warm_s: float  # wrk warm-up per target and profile
    openloop_s: float
    stream_s: float
    soak_first: int  # RSS is read once a process has served this many requests...
    soak_total: int  # ...and this many; the soak tops the counts up with wrk
    soak_caps_s: dict[str, tuple[float, float]]  # per process: time cap of each top-up
    ladder: tuple[int, ...] = (1, 4, 16, 32, 64, 128, 256, 512)
    rate: float = 200
    stream_concurrency: tuple[int, ...] = (1, 64)
    slo_ms: float = 50  # p99 budget on top of the simulator's latency


FULL = Plan(
    rounds=3,
    step_s=2,
    warm_s=2,
    openloop_s=3,
    stream_s=2,
    soak_first=20_000,
    soak_total=200_000,
    soak_caps_s={"aigate": (20, 100), "litellm": (10, 30)},
)
QUICK = Plan(
    rounds=1,
    step_s=1,
    warm_s=1,
    openloop_s=1.5,
    stream_s=1,
    soak_first=2_000,
    soak_total=20_000,
    soak_caps_s={"aigate": (5, 10), "litellm": (3, 5)},
    ladder=(1, 4, 16, 64, 256),
)

PROFILES = (
    # 0 ms: every figure. Streams: 50 chunks written at once.
    (
        stack.Profile("0ms", latency_ms=0, chunks=50, chunk_interval_ms=0),
        {"openloop": True, "stream_concurrency": None},
    ),
    # 50 ms: throughput under many in-flight requests, and long-lived streams (50 chunks,
    # 10 ms apart) at 64 concurrent.
    (
        stack.Profile("50ms", latency_ms=50, chunks=50, chunk_interval_ms=10),
        {"openloop": False, "stream_concurrency": (64,)},
    ),
)


@dataclass
class Call:
    base: str
    path: str  # may contain {user}
    headers: dict
    body: bytes
    tokens: tuple[str, ...] = ()  # user tokens, one per user: stream i sends tokens[i % len]

    def spec(self) -> str:
        spec = {"url": self.base + self.path, "headers": self.headers, "body": self.body.decode(), "users": USERS}
        if self.tokens:
            spec["tokens"] = list(self.tokens)
        return json.dumps(spec)


@dataclass
class Target:
    key: str
    label: str
    process: str  # key of the process measured for CPU and memory
    scenario: str  # "a" (App API) or "c" (raw chat completion)
    stream_scenario: str  # "b" or "c"
    call: Call | None = None
    stream: Call | None = None
    status: str = "ok"
    stream_status: str = "ok"
    script: Path | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    plan: Plan
    run_dir: Path
    out_dir: Path
    procs: P.Processes
    wrk_bin: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # requests served, per process
    rss_marks: dict[str, list] = field(default_factory=dict)  # per process: [served, rss_kb]
    log_lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def count(self, process: str, requests: int) -> None:
        """Add to a process's served count; read its RSS when the count passes a mark."""
        if process == "simulator":
            return
        n = self.served[process] = self.served.get(process, 0) + requests
        marks = self.rss_marks.setdefault(process, [])
        for threshold in (self.plan.soak_first, self.plan.soak_total):
            if n >= threshold and not any(m[0] >= threshold for m in marks):
                marks.append([n, P.memory_kb(self.pids[process])["rss_kb"]])

    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.started:6.0f}s] {msg}"
        print(line, flush=True)
        self.log_lines.append(line)


# --- one measurement ----------------------------------------------------------------


def json_headers(auth: str) -> dict:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {auth}"}


def run_wrk(b: Bench, t: Target, connections: int, duration: float, *, limit: int = 0) -> dict:
    script = t.script
    if limit:
        script = wrk.write_script(
            b.run_dir / f"{t.key}-soak.lua",
            url_path=t.call.path,
            body=t.call.body,
            headers=t.call.headers,
            users=USERS,
            limit=limit,
        )
    meter = P.Meter({"gateway": b.pids[t.process], "simulator": b.pids["simulator"]}).start()
    url = t.call.base + ("/" if "{user}" in t.call.path else t.call.path)
    res = wrk.run(b.wrk_bin, url, script, connections=connections, duration_s=duration, pin=b.procs.pin)
    res["meter"] = meter.stop()
    b.count(t.process, res["requests"])
    return res


def ladder(b: Bench, t: Target, slo_ms: float, prior_best: int | None) -> dict:
    """Closed-loop wrk at growing connection counts; the best req/s whose p99 stays within
    the budget (and errors under 1 %) is the throughput figure. The first round climbs until
    two steps in a row miss the budget or two steps add under 3 % (saturated); later rounds
    re-measure c=1 (the latency-at-concurrency-1 figure) and the first round's winner."""
    steps_plan = list(b.plan.ladder) if prior_best is None else sorted({1, prior_best})
    steps, best = [], None
    flat = misses = 0
    for c in steps_plan:
        r = run_wrk(b, t, c, b.plan.step_s)
        r["within_slo"] = r["latency_ms"]["p99"] <= slo_ms and r["errors"] <= 0.01 * max(1, r["requests"])
        steps.append(r)
        b.say(
            f"    c={c:<4} {r['rps']:8.1f} req/s  p50 {r['latency_ms']['p50']:7.2f} ms  "
            f"p99 {r['latency_ms']['p99']:8.2f} ms  err {r['errors']}  "
            f"gw cpu {r['meter']['cpu_pct']['gateway']:5.1f}%  "
            f"cores {r['meter']['core_busy_pct']}"
        )
        if not r["within_slo"]:
            misses += 1
            if misses >= 2 and prior_best is None:  # two misses in a row: past the knee
                break
            continue
        misses = 0
        if best is not None and r["rps"] < best["rps"] * 1.03:
            flat += 1
        else:
            flat = 0
        if best is None or r["rps"] > best["rps"]:
            best = r
        if flat >= 2 and prior_best is None:  # saturated: more connections only add latency
            break
    return {"steps": steps, "best_connections": best["connections"] if best else None}


def client(b: Bench, t: Target, mode: str, call: Call, **kw) -> dict:
    """Run bench.client (open loop or streams) as its own process on the load core."""
    argv = [sys.executable, "-m", "bench.client", mode, "--spec", call.spec()]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    if b.procs.pin:
        argv = ["taskset", "-c", str(P.LOAD_CPU), *argv]
    meter = P.Meter({"gateway": b.pids[t.process], "simulator": b.pids["simulator"]}).start()
    out = subprocess.run(
        argv, check=False, capture_output=True, text=True, cwd=stack.REPO, timeout=float(kw.get("duration", 5)) + 120
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.client {mode} failed: {out.stderr[-1500:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["meter"] = meter.stop()
    b.count(t.process, res["total_requests"])
    return res


def measure(b: Bench, t: Target, profile: stack.Profile, opts: dict, prior: dict | None) -> dict:
    out: dict = {}
    slo = b.plan.slo_ms + profile.latency_ms
    if t.call is not None and t.status == "ok":
        b.say(f"  {t.label}: throughput ladder (p99 budget {slo:.0f} ms)")
        out["ladder"] = ladder(b, t, slo, prior["ladder"]["best_connections"] if prior else None)
        if opts["openloop"]:
            r = client(b, t, "openloop", t.call, rate=b.plan.rate, duration=b.plan.openloop_s, warmup=0.5)
            out["openloop"] = r
            lat = r["latency_ms"]
            b.say(
                f"  {t.label}: open loop {b.plan.rate:.0f} req/s: p50 {lat['p50']} ms, "
                f"p99 {lat['p99']} ms, errors {r['error_count']}, sent at {r['achieved_send_rate']}/s"
            )
    if t.stream is not None and t.stream_status == "ok":
        out["stream"] = {}
        for c in opts["stream_concurrency"] or b.plan.stream_concurrency:
            r = client(b, t, "stream", t.stream, concurrency=c, duration=b.plan.stream_s, warmup=0)
            out["stream"][str(c)] = r
            b.say(
                f"  {t.label}: {c} streams: TTFB p50 {r['ttfb_ms']['p50']} ms, p99 "
                f"{r['ttfb_ms']['p99']} ms, gap p99 {r['gap_ms']['p99']} ms, "
                f"{r['streams']} streams, errors {r['error_count']}"
            )
    return out


# --- set-up ---------------------------------------------------------------------------


def probe(call: Call, stream: bool) -> str:
    """ "ok", or why the route cannot be measured."""
    url = call.base + call.path.replace("{user}", "bench-probe")
    try:
        status, body = P.http_post(url, call.body, call.headers, timeout=30)
    except OSError as exc:
        return f"error: {exc}"
    if status == 404:
        return "not available (404)"
    if status != 200:
        return f"error: status {status}: {body[:200].decode(errors='replace')}"
    if stream and b"data:" not in body:
        return "error: no SSE events in the response"
    return "ok"


def build_targets(b: Bench, urls: dict[str, str]) -> None:
    """The targets of the gateways that started (``urls``), each probed once."""
    scen = b.args.scenarios
    sim_h = json_headers(stack.SIM_KEY)

    def raw(key: str, label: str, process: str, base: str, headers: dict) -> Target:
        t = Target(key, label, process, "c", "c")
        if "c" in scen or key == "direct":
            t.call = Call(base, CHAT_PATH, headers, RAW_BODY)
            t.stream = Call(base, CHAT_PATH, headers, RAW_STREAM_BODY)
        return t

    b.targets.append(raw("direct", "direct", "simulator", urls["simulator"], sim_h))
    if "bare" in urls:
        b.targets.append(raw("bare", "bare proxy", "bare", urls["bare"], sim_h))
    if "aigate" in urls:
        base = urls["aigate"]
        app = Target("aigate-app", "aigate App API", "aigate", "a", "b")
        server_h = json_headers(stack.SERVER_KEY)
        if "a" in scen:
            app.call = Call(base, APP_PATH, server_h, APP_BODY)
        if "b" in scen:
            app.stream = Call(base, APP_STREAM_PATH, server_h, APP_BODY)
        if app.call or app.stream:
            b.targets.append(app)
        if "c" in scen:
            b.targets.append(raw("aigate-relay", "aigate relay", "aigate", base, json_headers(stack.RELAY_KEY)))
    if "litellm" in urls and "c" in scen:
        b.targets.append(raw("litellm", "LiteLLM", "litellm", urls["litellm"], json_headers(stack.LITELLM_KEY)))
    for t in b.targets:
        if t.call is not None:
            t.status = probe(t.call, False)
            if t.status == "not available (404)" and t.key == "aigate-relay":
                t.status = "relay not available"
            t.script = wrk.write_script(
                b.run_dir / f"{t.key}.lua", url_path=t.call.path, body=t.call.body, headers=t.call.headers, users=USERS
            )
        if t.stream is not None:
            t.stream_status = probe(t.stream, True)
            if t.stream_status == "not available (404)" and t.key == "aigate-relay":
                t.stream_status = "relay not available"
        b.say(
            f"target {t.label}: non-stream {t.status if t.call else '-'}, stream {t.stream_status if t.stream else '-'}"
        )


def machine_info() -> dict:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "load_avg_at_start": os.getloadavg(),
    }


def versions(b: Bench, with_litellm: bool) -> dict:
    def ver(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=stack.REPO
    ).stdout.strip()
    dirty = (
        subprocess.run(
            ["git", "--no-optional-locks", "diff", "--quiet", "HEAD", "--"],
            check=False,
            capture_output=True,
            cwd=stack.REPO,
        ).returncode
        == 1
    )
    return {
        "python": platform.python_version(),
        "aigate": f"{ver('aigate')} ({commit}{'+dirty' if dirty else ''})",
        "litellm": stack.litellm_version() if with_litellm else "-",
        "uvicorn": ver("uvicorn"),
        "starlette": ver("starlette"),
        "aiohttp": ver("aiohttp"),
        "uvloop": ver("uvloop"),
        "wrk": wrk.wrk_version(b.wrk_bin),
    }


# --- the run --------------------------------------------------------------------------


def warm(b: Bench) -> None:
    for t in b.targets:
        if t.call is not None and t.status == "ok":
            run_wrk(b, t, 16, b.plan.warm_s)
        if t.stream is not None and t.stream_status == "ok":
            client(b, t, "stream", t.stream, concurrency=8, duration=b.plan.warm_s / 2, warmup=0)


def soak(b: Bench, t: Target, connections: int) -> dict:
    """Top the process's served count up to the two marks with wrk (time-capped), so its
    RSS is known after ``soak_first`` and ``soak_total`` requests (or as far as it got)."""
    proc = t.process
    caps = b.plan.soak_caps_s.get(proc, (10, 30))
    for threshold, cap in zip((b.plan.soak_first, b.plan.soak_total), caps):
        missing = threshold - b.served.get(proc, 0)
        if missing > 0:
            run_wrk(b, t, connections, cap, limit=missing)
        marks = b.rss_marks.setdefault(proc, [])
        if b.served.get(proc, 0) < threshold:  # capped: record how far it got
            marks.append([b.served.get(proc, 0), P.memory_kb(b.pids[proc])["rss_kb"]])
    out = {
        "connections": connections,
        "rss_start_kb": b.results["processes"][proc]["rss_start_kb"],
        "marks": [{"requests": n, "rss_kb": kb} for n, kb in b.rss_marks[proc]],
    }
    b.say(
        f"  soak {t.label}: RSS {out['rss_start_kb'] // 1024} MB at start, "
        + ", ".join(f"{m['rss_kb'] // 1024} MB after {m['requests']:,}" for m in out["marks"])
    )
    return out


def run(b: Bench) -> None:
    args = b.args
    b.wrk_bin = wrk.ensure_wrk()
    if not stack.simulator_available():
        raise SystemExit("`aigate simulator` is not available in this checkout")
    failed: dict[str, str] = {}  # gateway -> why it is left out
    litellm_bin = None
    if "litellm" in args.only and "c" in args.scenarios:
        try:
            litellm_bin = stack.ensure_litellm()
        except RuntimeError as exc:
            failed["litellm"] = f"install failed: {str(exc)[-300:]}"
            b.say(f"LiteLLM left out: {failed['litellm']}")
    b.results["meta"] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
        "versions": versions(b, litellm_bin is not None),
        "plan": {k: v for k, v in b.plan.__dict__.items()},
        "profiles": [{**p.__dict__, **o} for p, o in PROFILES],
        "users": USERS,
        "pinned": b.procs.pin,
    }
    sim_port = P.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    profiles = [(p, o) for p, o in PROFILES if p.name in args.profiles]

    sim = stack.start_simulator(b.procs, sim_port, profiles[0][0])
    b.pids["simulator"] = sim.pid
    urls = {"simulator": sim_url}
    gw_procs: dict[str, P.Proc] = {}
    starters = {
        "bare": lambda: stack.start_bare(b.procs, sim_url),
        "aigate": lambda: stack.start_aigate(b.procs, b.run_dir, sim_url, b.args.app_cost),
        "litellm": lambda: stack.start_litellm(b.procs, b.run_dir, sim_url, litellm_bin),
    }
    for name, start in starters.items():
        if name not in args.only or name in failed or (name == "litellm" and litellm_bin is None):
            continue
        b.say(f"starting {name}")
        try:
            gw_procs[name], urls[name] = start()
        except RuntimeError as exc:  # the others are still worth measuring
            failed[name] = f"did not start: {str(exc)[:300]}"
            b.say(f"{name} left out: {exc}")
    for name, proc in gw_procs.items():
        b.pids[name] = proc.pid
    b.results["meta"]["left_out"] = failed
    build_targets(b, urls)
    b.results["targets"] = {
        t.key: {
            "label": t.label,
            "process": t.process,
            "scenario": t.scenario,
            "stream_scenario": t.stream_scenario,
            "status": t.status if t.call else "not run",
            "stream_status": t.stream_status if t.stream else "not run",
        }
        for t in b.targets
    }
    # idle cost of each process with nothing to do (they share the gateway core)
    idle = P.Meter({k: v for k, v in b.pids.items()}).start()
    time.sleep(2)
    b.results["idle"] = idle.stop()
    b.results["processes"] = {k: {"rss_start_kb": P.memory_kb(p)["rss_kb"]} for k, p in b.pids.items()}
    b.say(f"idle CPU %: {b.results['idle']['cpu_pct']}")

    b.results["profiles"] = {}
    sim_peaks = [0]
    for index, (profile, opts) in enumerate(profiles):
        if index:
            sim_peaks.append(P.memory_kb(sim.pid)["hwm_kb"])
            b.procs.stop(sim)
            sim = stack.start_simulator(b.procs, sim_port, profile)
            b.pids["simulator"] = sim.pid
        b.say(
            f"profile {profile.name}: simulator latency {profile.latency_ms} ms, "
            f"{profile.chunks} chunks {profile.chunk_interval_ms} ms apart; warming up"
        )
        warm(b)
        rounds, orders = [], []
        first: dict[str, dict] = {}
        for r in range(b.plan.rounds):
            order = b.targets if r % 2 == 0 else list(reversed(b.targets))
            orders.append([t.key for t in order])
            b.say(f"profile {profile.name}, round {r + 1}/{b.plan.rounds}")
            block = {}
            for t in order:
                try:
                    block[t.key] = measure(b, t, profile, opts, first.get(t.key))
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                    b.say(f"  {t.label}: measurement failed: {exc}")
                    block[t.key] = {"error": str(exc)[:2000]}
                if r == 0:
                    first[t.key] = block[t.key]
            rounds.append(block)
        b.results["profiles"][profile.name] = {
            "rounds": rounds,
            "orders": orders,
            "slo_ms": b.plan.slo_ms + profile.latency_ms,
        }
        if profile.latency_ms == 0 and not args.no_soak:
            b.results["soak"] = {}
            for key in ("aigate-app", "aigate-relay", "litellm"):
                t = next((x for x in b.targets if x.key == key and x.call and x.status == "ok"), None)
                if t is None or (key == "aigate-relay" and "aigate-app" in b.results["soak"]):
                    continue
                best = first.get(key, {}).get("ladder", {}).get("best_connections") or 16
                b.results["soak"][key] = soak(b, t, best)
    sim_peaks.append(P.memory_kb(sim.pid)["hwm_kb"])
    b.results["served"] = dict(b.served)
    b.results["rss_marks"] = {k: [{"requests": n, "rss_kb": kb} for n, kb in v] for k, v in b.rss_marks.items()}
    for name, pid in b.pids.items():
        mem = P.memory_kb(pid)
        b.results["processes"].setdefault(name, {}).update(
            {"peak_rss_kb": max(sim_peaks) if name == "simulator" else mem["hwm_kb"], "rss_end_kb": mem["rss_kb"]}
        )
    for name, proc in gw_procs.items():
        if not proc.alive():
            b.say(f"WARNING: {name} exited during the run:\n{proc.log_tail()}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="one round, short steps (smoke run)")
    ap.add_argument(
        "--only",
        default=",".join(GATEWAYS),
        help=f"gateways to run, from {','.join(GATEWAYS)} (direct always runs: it is the reference)",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="a: App API chat, b: App API stream, c: raw chat completion (default all)",
    )
    ap.add_argument("--profiles", default="0ms,50ms", help="simulator latency profiles: 0ms,50ms")
    ap.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    ap.add_argument("--no-soak", action="store_true", help="skip the RSS soak")
    ap.add_argument("--out", type=Path, help="output folder (default bench/, or bench/.work/quick with --quick)")
    ap.add_argument(
        "--keep-work", action="store_true", help="keep the run folder (configs, SQLite database, process logs)"
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    ap.add_argument(
        "--app-cost",
        choices=sorted(stack.APP_COSTS),
        default="flat",
        help="the App API strategy's cost: flat (1 credit) or tokens (hold, then settlement)",
    )
    args = ap.parse_args(argv)
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    args.scenarios = {x.strip() for x in args.scenarios.split(",") if x.strip()}
    args.profiles = {x.strip() for x in args.profiles.split(",") if x.strip()}
    for name, given, allowed in (
        ("--only", args.only, GATEWAYS),
        ("--scenarios", args.scenarios, SCENARIOS),
        ("--profiles", args.profiles, [p.name for p, _ in PROFILES]),
    ):
        bad = given - set(allowed)
        if bad or not given:
            ap.error(f"{name}: unknown {sorted(bad)}; choose from {','.join(allowed)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    out_dir = args.out or (stack.WORK / "quick" if args.quick else stack.REPO / "bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    stack.WORK.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=stack.WORK))
    pin = P.pinning_available() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {P.LOAD_CPU})  # keep the harness itself off the gateway core
    else:
        print("WARNING: fewer than 2 cores or no taskset: processes are not pinned", flush=True)
    b = Bench(args, plan, run_dir, out_dir, P.Processes(run_dir, pin=pin))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # installed explicitly: a shell starting the harness in the background ignores SIGINT
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 0
    try:
        run(b)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process started", flush=True)
        code = 130
    except Exception:
        code = 1
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        b.procs.stop_all()
        if code == 0:
            b.results["meta"]["elapsed_s"] = round(time.monotonic() - b.started)
            b.results["log"] = b.log_lines
            paths = write_outputs(b.results, out_dir)
            b.say(
                "wrote "
                + ", ".join(str(p.relative_to(stack.REPO)) if p.is_relative_to(stack.REPO) else str(p) for p in paths)
            )
            if not args.keep_work:
                shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs kept in {run_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
