"""Instructions per request, counted by valgrind's callgrind: a CPU cost that does not move
with the machine's load, for comparing two builds of the hot path.

    .venv/bin/python -m bench.instructions                          # App API chat and relay
    .venv/bin/python -m bench.instructions --other /path/to/checkout --paths relay

Each gateway (this checkout, and ``--other`` with its own .venv) runs under callgrind
with instrumentation off, on the benchmark's configuration (``bench.stack.aigate_config``:
SQLite, credits, a daily limit, saved history, usage logging) against the simulator at
0 ms. After ``--warm`` requests, counting is switched on for exactly ``--requests``
requests (``--connections`` at a time) and a second for the writer to flush what they
queued; the count of every thread, divided by the requests, is printed per thread and in
total. The same build measured twice agrees within 1 %. Kernel time (system calls,
context switches) is not counted: wall-clock CPU comes from ``bench.run`` and
``bench.c1_tail``.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import yaml

from bench import procs as P
from bench import stack
from bench.run import APP_BODY, APP_PATH, CHAT_PATH, RAW_BODY, USERS, json_headers

T = TypeVar("T")

PATHS = {
    "app": (APP_PATH, APP_BODY, stack.SERVER_KEY),
    "relay": (CHAT_PATH, RAW_BODY, stack.RELAY_KEY),
}


async def send(url: str, n: int, connections: int, body: bytes, headers: dict) -> int:
    """Exactly ``n`` POSTs, ``connections`` at a time; the number answered 200."""
    sent = ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal sent, ok
            while sent < n:
                user = f"bench-u{sent % USERS}"
                sent += 1
                async with session.post(url.replace("{user}", user), data=body, headers=headers) as resp:
                    await resp.read()
                    ok += resp.status == 200

        await asyncio.gather(*(worker() for _ in range(connections)))
    return ok


def totals(out: Path) -> dict[str, int]:
    """Instructions per thread from callgrind's dump files (``<out>.<dump>-<thread>``)."""
    per: dict[str, int] = {}
    for name in glob.glob(f"{out}.*"):
        thread = name.rsplit("-", 1)[-1]
        counted = [
            int(line.split()[1])
            for line in Path(name).read_text(errors="replace").splitlines()
            if line.startswith(("totals:", "summary:"))
        ]  # the header's summary may say 0
        per[thread] = per.get(thread, 0) + max(counted, default=0)
    return per


def counted(pid: int, out: Path, load: Callable[[], T]) -> tuple[T, dict[str, int]]:
    """Run ``load`` with callgrind's counting on in process ``pid`` (started with
    ``--instr-atstart=no``), and a second more for the writer to flush what it queued;
    what ``load`` returned, and the instructions per thread (``totals``)."""
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    result = load()
    time.sleep(1.0)  # the writer's flush of the load's rows
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(300):  # the dump is written when the process next wakes up
        if glob.glob(f"{out}.*"):
            break
        time.sleep(0.1)
    time.sleep(1.5)  # every thread's file
    return result, totals(out)


def measure(name: str, checkout: Path, path: str, work: Path, sim_url: str, args) -> dict[str, int]:
    run_dir = work / f"{name}-{path}"
    run_dir.mkdir(parents=True)
    port = P.free_port()
    cfg_path = run_dir / "aigate.yaml"
    cfg_path.write_text(yaml.safe_dump(stack.aigate_config(run_dir / "aigate.db", port, sim_url), sort_keys=False))
    out = run_dir / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
    argv += [f"--callgrind-out-file={out}", str(checkout / ".venv/bin/python"), str(checkout / ".venv/bin/aigate")]
    argv += ["serve", "--config", str(cfg_path), "--log-level", "WARNING"]
    processes = P.Processes(run_dir, pin=False)
    try:
        proc = processes.start(name, argv, cpu=None, cwd=run_dir)
        url = f"http://127.0.0.1:{port}"
        P.wait_http(proc, f"{url}/healthz", timeout=300, ok=lambda s: s == 200)
        url_path, body, key = PATHS[path]
        headers = json_headers(key)
        asyncio.run(send(url + url_path, args.warm, args.connections, body, headers))
        ok, per_thread = counted(
            proc.pid, out, lambda: asyncio.run(send(url + url_path, args.requests, args.connections, body, headers))
        )
        if ok != args.requests:
            raise RuntimeError(f"{name} {path}: {args.requests - ok} requests failed")
        return {thread: count // args.requests for thread, count in per_thread.items() if count > args.requests}
    finally:
        processes.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", type=Path, help="another checkout (with its own .venv) to count side by side")
    ap.add_argument("--paths", default="app,relay", help="app (App API chat), relay, or both")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args(argv)
    checkouts = {"this": stack.REPO, **({"other": args.other.resolve()} if args.other else {})}
    work = Path(tempfile.mkdtemp(prefix="aigate-instructions-"))
    sim = P.Processes(work, pin=False)
    try:
        sim_port = P.free_port()
        stack.start_simulator(sim, sim_port, stack.Profile("0ms", 0, 50, 0))
        for path in args.paths.split(","):
            for name, checkout in checkouts.items():
                per = measure(name, checkout, path, work, f"http://127.0.0.1:{sim_port}", args)
                threads = ", ".join(f"thread {t}: {n:,}" for t, n in sorted(per.items()))
                print(f"{path} {name}: {sum(per.values()):,} instructions per request ({threads})", flush=True)
    finally:
        sim.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
