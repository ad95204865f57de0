"""Instructions per streamed event, counted by valgrind's callgrind: the open-streams
benchmark's CPU per event without the machine's noise, for the bare proxy, the relay and
the App API stream, and for comparing two builds.

    .venv/bin/python -m bench.stream_instructions                        # bare, relay, app
    .venv/bin/python -m bench.stream_instructions --paths relay --other /path/to/checkout

Each target (the bare proxy, or a gateway with the benchmark's configuration) runs under
callgrind with instrumentation off. After a few warm-up streams, counting is switched on
for ``--streams`` concurrent streams of ``--chunks`` deltas 50 ms apart (the simulator
runs outside callgrind), and off a second after they end. Every thread's count is divided
by the events delivered; the event loop's thread (``main``) is printed apart. With
``--short N`` each target is counted a second time with streams of N deltas, and the
difference of the two counts over the difference in events is printed as the cost of
one more event: the per-stream cost (the request, the call's bookkeeping, its rows) taken
out, but not the time-based cost of an idle gateway over the longer run. Kernel time is
not counted. The same build counted twice agrees within about 1 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp
import yaml

from bench import procs as P
from bench import stack
from bench.instructions import counted
from bench.run import APP_BODY, APP_STREAM_PATH, CHAT_PATH, RAW_STREAM_BODY, json_headers
from bench.streams import REPLY_CHARS

INTERVAL_MS = 50


async def streams(url: str, body: bytes, headers: dict, n: int) -> None:
    """``n`` concurrent streams, each read to its end."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:

        async def one(i: int) -> None:
            async with session.post(url.replace("{user}", f"bench-u{i}"), data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
                async for _ in resp.content.iter_any():
                    pass

        await asyncio.gather(*(one(i) for i in range(n)))


def target_argv(path: str, checkout: Path, run_dir: Path, port: int, sim_url: str) -> tuple[list[str], dict, str]:
    """The command line, environment and URL path of one target."""
    python = str(checkout / ".venv/bin/python")
    if path == "bare":
        return stack.bare_argv(python, port), {**os.environ, "BARE_UPSTREAM": sim_url}, CHAT_PATH
    cfg_path = run_dir / "aigate.yaml"
    cfg_path.write_text(yaml.safe_dump(stack.aigate_config(run_dir / "aigate.db", port, sim_url), sort_keys=False))
    argv = [python, str(checkout / ".venv/bin/aigate"), "serve", "--config", str(cfg_path), "--log-level", "WARNING"]
    return argv, dict(os.environ), CHAT_PATH if path == "relay" else APP_STREAM_PATH


def count(path: str, checkout: Path, run_dir: Path, sim_url: str, n: int) -> dict[str, int]:
    """Instructions per thread while ``n`` streams run through one target."""
    run_dir.mkdir(parents=True)
    port = P.free_port()
    argv, env, url_path = target_argv(path, checkout, run_dir, port, sim_url)
    out = run_dir / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
    valgrind.append(f"--callgrind-out-file={out}")
    key = {"bare": stack.SIM_KEY, "relay": stack.RELAY_KEY, "app": stack.SERVER_KEY}[path]
    body = APP_BODY if path == "app" else RAW_STREAM_BODY
    url = f"http://127.0.0.1:{port}"
    processes = P.Processes(run_dir, pin=False)
    try:
        proc = processes.start(path, valgrind + argv, cpu=None, env=env, cwd=checkout)
        health = CHAT_PATH if path == "bare" else "/healthz"  # the bare proxy answers a GET with 405
        P.wait_http(proc, url + health, timeout=300, ok=lambda s: s in (200, 405))
        asyncio.run(streams(url + url_path, body, json_headers(key), 4))
        _, per_thread = counted(proc.pid, out, lambda: asyncio.run(streams(url + url_path, body, json_headers(key), n)))
        return per_thread
    finally:
        processes.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", default="bare,relay,app", help="bare (the bare proxy), relay, app")
    ap.add_argument("--other", type=Path, help="another checkout (with its own .venv) to count side by side")
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--short", type=int, default=0, help="also count streams of this many deltas")
    args = ap.parse_args(argv)
    checkouts = {"this": stack.REPO, **({"other": args.other.resolve()} if args.other else {})}
    work = Path(tempfile.mkdtemp(prefix="stream-instructions-", dir=stack.WORK))
    lengths = [args.chunks] + ([args.short] if args.short else [])
    sims: dict[int, str] = {}
    processes = P.Processes(work, pin=False)
    try:
        for chunks in lengths:
            port = P.free_port()
            stack.start_simulator(processes, port, stack.Profile(f"s{chunks}", 0, chunks, INTERVAL_MS), REPLY_CHARS)
            sims[chunks] = f"http://127.0.0.1:{port}"
        for path in args.paths.split(","):
            for name, checkout in checkouts.items():
                if path == "bare" and name == "other":
                    continue  # one bare proxy: it is the same code in both checkouts
                main_thread = {}
                for chunks in lengths:
                    per = count(path, checkout, work / f"{name}-{path}-{chunks}", sims[chunks], args.streams)
                    events = args.streams * chunks
                    main_thread[chunks] = per.get("01", 0)
                    threads = ", ".join(f"{t}: {n / events:,.0f}" for t, n in sorted(per.items()) if n > events)
                    print(
                        f"{path} ({name}), {args.streams} streams of {chunks}: {sum(per.values()) / events:,.0f} "
                        f"instructions per event, main {main_thread[chunks] / events:,.0f} (threads {threads})",
                        flush=True,
                    )
                if args.short:
                    more = args.streams * (args.chunks - args.short)
                    per_event = (main_thread[args.chunks] - main_thread[args.short]) / more
                    print(f"{path} ({name}): one more event, main thread: {per_event:,.0f} instructions", flush=True)
    finally:
        processes.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
