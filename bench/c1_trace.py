"""Where the App API's slowest requests at concurrency 1 spend their time.

    .venv/bin/python -m bench.c1_trace [--seconds 15] [--out trace.json]

One simulator (0 ms profile) on the load core and one gateway on the gateway core, with
the benchmark's configuration (``bench.stack.aigate_config``: SQLite). The gateway runs
with probes (``--probe-serve``, this module's other mode): every hop of SQLite's lane
(``aigate.store.script``: start, end, the scripts it ran, the database thread's CPU time
in it), the checkpoint's copy in its own thread (with the WAL frames it saw and copied)
and the database sync in it, every script's wait from submit to result, and the event
loop's stalls (a 1 ms sleep that overshoots by more than 1.5 ms). A keep-alive client on
the load core sends App API chat calls one at a time and times each. The report
attributes the slowest 1.5 % of calls: the time in their own scripts (waiting for and
running their hops) against the rest, which of them overlapped a writer flush, upkeep or
checkpoint hop (or the checkpoint's copy) by more than 1 ms, and the requests' own hops
longer than 3 ms (where SQLite checkpoints inside a commit).

The probes add a few percent of CPU; compare figures from this tool with each other, and
take latency figures from ``bench.c1_tail``.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench import procs as P
from bench import stack, stream_load
from bench.run import APP_BODY, APP_PATH, USERS, json_headers


def probe_serve(argv: list[str]) -> None:
    """Run ``aigate serve`` with the probes; SIGUSR1 writes what they saw to the file
    named by the AIGATE_TRACE_OUT environment variable."""
    import asyncio

    import uvicorn.server

    from aigate.cli import app
    from aigate.store import checkpoint, script

    hops: list = []  # (start, end, [script names], the lane thread's CPU seconds)
    scripts: list = []  # (submitted, resolved, background, name)
    stalls: list = []  # (start, overshoot)
    run_batch, submit, startup = script._run_batch, script._SqliteLane.submit, uvicorn.server.Server.startup
    finish = checkpoint._finish  # the checkpoint's hop outside any transaction
    side_copy = checkpoint.WalCheckpointer._copy  # its copy and sync in a thread of its own

    def probed_run_batch(conn, batch, *rest):
        started, cpu = time.monotonic(), time.thread_time()
        try:
            return run_batch(conn, batch, *rest)
        finally:
            names = [getattr(fn, "__name__", "?") for fn, _ in batch]
            hops.append((started, time.monotonic(), names, time.thread_time() - cpu))

    def probed_finish(conn):
        if threading.current_thread().name.startswith("wal-checkpoint"):
            return finish(conn)  # the side connection's copy: not a hop of the lane
        started, cpu = time.monotonic(), time.thread_time()
        try:
            return finish(conn)
        finally:
            hops.append((started, time.monotonic(), ["_finish"], time.thread_time() - cpu))

    def probed_side_copy(self, *args):
        started, cpu = time.monotonic(), time.thread_time()
        seen = (0, 0)
        try:
            seen = side_copy(self, *args)
            return seen
        finally:
            hops.append((started, time.monotonic(), ["side_copy"], time.thread_time() - cpu, seen))

    async def probed_submit(self, fn, args, *rest, **kw):
        started = time.monotonic()
        try:
            return await submit(self, fn, args, *rest, **kw)
        finally:
            background = bool(rest[0]) if rest else bool(kw.get("background"))
            scripts.append((started, time.monotonic(), background, getattr(fn, "__name__", "?")))

    async def watch_loop():
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.001)
            overshoot = time.monotonic() - started - 0.001
            if overshoot > 0.0015:
                stalls.append((started, overshoot))

    def dump():  # written aside, then renamed: the reader never sees half a file
        out = Path(os.environ["AIGATE_TRACE_OUT"])
        out.with_suffix(".part").write_text(json.dumps({"hops": hops, "scripts": scripts, "stalls": stalls}))
        os.replace(out.with_suffix(".part"), out)

    async def probed_startup(self, sockets=None):
        loop = asyncio.get_running_loop()
        loop.create_task(watch_loop())
        loop.add_signal_handler(signal.SIGUSR1, dump)
        return await startup(self, sockets)

    script._run_batch = probed_run_batch
    checkpoint._finish = probed_finish
    checkpoint.WalCheckpointer._copy = probed_side_copy
    fdatasync = os.fdatasync

    def probed_fdatasync(fd):
        started = time.monotonic()
        try:
            return fdatasync(fd)
        finally:
            hops.append((started, time.monotonic(), ["side_sync"], 0.0))

    os.fdatasync = probed_fdatasync
    collecting: list = []

    def on_collection(phase, info):  # the collector's pauses, on whichever thread runs it
        if phase == "start":
            collecting.append(time.monotonic())
        elif collecting:
            hops.append((collecting.pop(), time.monotonic(), [f"gc{info['generation']}"], 0.0))

    gc.callbacks.append(on_collection)
    script._SqliteLane.submit = probed_submit
    uvicorn.server.Server.startup = probed_startup
    sys.argv = ["aigate", *argv]
    app()


class KeepAliveClient:
    """App API chat calls over one keep-alive connection, one at a time (raw HTTP/1.1)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        spec = {
            "url": f"http://127.0.0.1:{port}{APP_PATH}",
            "headers": json_headers(stack.SERVER_KEY),
            "body": APP_BODY.decode(),
            "users": USERS,
        }
        self.requests = stream_load.requests(spec, USERS)  # one request's bytes per user id

    def call(self, i: int) -> None:
        self.sock.sendall(self.requests[i % USERS])
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head[:200].decode(errors="replace"))
        length = next(
            int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-length"
        )
        while len(body) < length:
            body += self.sock.recv(65536)


# The writer's work, the checkpoint's finish on the lane and its copy in its own thread
# (whose database sync, "side_sync", lies within the copy).
BACKGROUND = {"_flush", "index_new_rows", "roll_up_new_rows", "_finish", "side_copy"}
NOT_REQUESTS = BACKGROUND | {"side_sync", "gc0", "gc1", "gc2"}  # gcN: a collection of generation N


QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def report(calls: list[tuple[float, float]], trace: dict) -> dict:
    """Attribute the slowest 1.5 % of calls (``calls``: start, latency in seconds)."""
    ordered = sorted(lat for _, lat in calls)
    n = len(ordered)
    cut = ordered[int(n * 0.985)]
    first, last = calls[0][0], calls[-1][0] + calls[-1][1]
    hops = [h for h in trace["hops"] if first <= h[0] <= last]
    background = [h for h in hops if BACKGROUND & set(h[2])]
    own = sorted((s for s in trace["scripts"] if not s[2]), key=lambda s: s[0])
    starts = [s[0] for s in own]

    def in_scripts(start: float, lat: float) -> float:
        mine = own[bisect.bisect_left(starts, start) : bisect.bisect_right(starts, start + lat)]
        return sum(s[1] - s[0] for s in mine)

    def summary(selected: list[tuple[float, float]]) -> dict:
        waits = [in_scripts(t, lat) for t, lat in selected]
        return {
            "calls": len(selected),
            "latency_ms": round(statistics.mean(lat for _, lat in selected) * 1e3, 2),
            "in_own_scripts_ms": round(statistics.mean(waits) * 1e3, 2),
            "rest_ms": round(statistics.mean(lat - w for (_, lat), w in zip(selected, waits, strict=True)) * 1e3, 2),
        }

    slow = [(t, lat) for t, lat in calls if lat >= cut]
    kinds = sorted((h[0], h[1], NOT_REQUESTS & set(h[2])) for h in hops if NOT_REQUESTS & set(h[2]))
    kind_starts = [k[0] for k in kinds]

    def beside(t: float, lat: float, more_than: float) -> set[str]:
        """The kinds of work that overlapped the call starting at ``t`` by more than
        ``more_than`` seconds."""
        near = kinds[bisect.bisect_left(kind_starts, t - 0.1) : bisect.bisect_right(kind_starts, t + lat)]
        return {name for s, e, names in near if _overlap(t, t + lat, s, e) > more_than for name in names}

    def overlapping(selected: list[tuple[float, float]]) -> dict[str, str]:
        """The share of the calls that overlapped each kind of background work by
        more than 0.3 ms (a call can overlap several; "none": no background work)."""
        counts: dict[str, int] = {}
        for t, lat in selected:
            for name in beside(t, lat, 0.0003) or {"none"}:
                counts[name] = counts.get(name, 0) + 1
        return {k: f"{100 * v / len(selected):.0f}%" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}

    def by_overlap() -> dict[str, dict]:
        """Every call in one group by what ran beside it (by more than 0.1 ms): nothing, a
        background hop of the lane, the checkpoint's copy (or its sync), or both; latency
        per group, so a change's effect on the calls it touches shows within one run."""
        groups: dict[str, list[float]] = {}
        for t, lat in calls:
            hit = beside(t, lat, 0.0001)
            copy, lane = bool(hit & {"side_copy", "side_sync"}), bool(hit & (BACKGROUND - {"side_copy"}))
            group = {(False, False): "nothing", (True, False): "copy", (False, True): "lane"}.get((copy, lane), "both")
            groups.setdefault(group, []).append(lat)
        return {
            name: {"share": f"{100 * len(v) / n:.1f}%"}
            | {q: round(sorted(v)[min(len(v) - 1, int(len(v) * f))] * 1e3, 2) for q, f in QUANTILES}
            for name, v in sorted(groups.items())
        }

    by_kind: dict[str, list[float]] = {}
    cpu_by_kind: dict[str, list[float]] = {}
    for h in hops:
        kind = "+".join(sorted(set(h[2])))
        by_kind.setdefault(kind, []).append(h[1] - h[0])
        cpu_by_kind.setdefault(kind, []).append(h[3])
    long_request_hops = [h for h in hops if h[1] - h[0] > 0.003 and not NOT_REQUESTS & set(h[2])]
    stalls = [s for s in trace["stalls"] if first <= s[0] <= last]
    return {
        "calls": n,
        "latency_ms": {
            q: round(ordered[int(n * f)] * 1e3, 2) for q, f in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))
        },
        "fastest_half": summary([(t, lat) for t, lat in calls if lat < ordered[n // 2]]),
        "slowest_1.5%": summary(slow),
        "slowest_overlapping_a_background_hop_1ms": sum(
            1 for t, lat in slow if sum(_overlap(t, t + lat, h[0], h[1]) for h in background) > 0.001
        ),
        "latency_ms_by_overlap": by_overlap(),
        "overlapping": {
            "slowest_1.5%": overlapping(slow),
            "the_rest": overlapping([(t, lat) for t, lat in calls if lat < cut]),
        },
        "hops_ms": {
            kind: {
                "count": len(d),
                "p50": round(sorted(d)[len(d) // 2] * 1e3, 3),
                "p99": round(sorted(d)[int(len(d) * 0.99)] * 1e3, 3),
                "max": round(max(d) * 1e3, 3),
                "cpu_p50": round(sorted(cpu_by_kind[kind])[len(d) // 2] * 1e3, 3),
            }
            for kind, d in sorted(by_kind.items(), key=lambda kv: -len(kv[1]))
        },
        "request_hops_over_3ms": len(long_request_hops),
        "loop_stalls": {"count": len(stalls), "sum_ms": round(sum(s[1] for s in stalls) * 1e3, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe-serve"]:
        probe_serve(argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warm", type=int, default=3000, help="calls before the timed ones")
    ap.add_argument("--out", type=Path, help="write the calls, the probes' records and the report here")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="aigate-c1-trace-"))
    processes = P.Processes(work, pin=P.pinning_available())
    try:
        sim_port = P.free_port()
        stack.start_simulator(processes, sim_port, stack.Profile("0ms", 0, 50, 0))
        port = P.free_port()
        cfg = stack.aigate_config(work / "aigate.db", port, f"http://127.0.0.1:{sim_port}")
        (work / "aigate.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
        trace_path = work / "trace.json"
        argv_gw = [
            sys.executable,
            "-m",
            "bench.c1_trace",
            "--probe-serve",
            "serve",
            "--config",
            str(work / "aigate.yaml"),
        ]
        env = {**os.environ, "AIGATE_TRACE_OUT": str(trace_path), "PYTHONPATH": str(stack.REPO)}
        proc = processes.start("aigate", [*argv_gw, "--log-level", "WARNING"], cpu=P.GATEWAY_CPU, cwd=work, env=env)
        P.wait_http(proc, f"http://127.0.0.1:{port}/healthz", timeout=60, ok=lambda s: s == 200)
        if P.pinning_available():
            os.sched_setaffinity(0, {P.LOAD_CPU})
        client = KeepAliveClient(port)
        for i in range(args.warm):
            client.call(i)
        calls: list[tuple[float, float]] = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            client.call(len(calls))
            calls.append((started, time.monotonic() - started))
        os.kill(proc.pid, signal.SIGUSR1)
        for _ in range(300):
            if trace_path.exists():
                break
            time.sleep(0.1)
        trace = json.loads(trace_path.read_text())
        result = report(calls, trace)
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps({"report": result, "calls": calls, **trace}))
    finally:
        processes.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
