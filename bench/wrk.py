"""Closed-loop throughput with wrk: a Lua script per target (POST body, headers, a pool of
user ids in the path) whose ``done`` hook prints the exact latency percentiles as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.procs import LOAD_CPU

MARK = "WRKJSON "

LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local users = %(users)d
local prefix, suffix = [==[%(prefix)s]==], [==[%(suffix)s]==]
local n = 0
if users > 0 then
  request = function()
    n = (n + 1) %% users
    return wrk.format(nil, prefix .. n .. suffix)
  end
end
local limit = %(limit)d
if limit > 0 then
  local count = 0
  response = function(status, headers, body)
    count = count + 1
    if count >= limit then wrk.thread:stop() end
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"err_connect":%%d,"err_read":%%d,' ..
    '"err_write":%%d,"err_status":%%d,"err_timeout":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"p999_us":%%d,"max_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get (Debian package 'wrk')", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "wrk is required: install it with `sudo apt-get install wrk` (Debian/Ubuntu) "
        "or `brew install wrk`, then re-run."
    )


def wrk_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def write_script(path: Path, *, url_path: str, body: bytes, headers: dict, users: int, limit: int = 0) -> Path:
    """``url_path`` may contain ``{user}``, replaced per request by ``bench-u<n>``."""
    if "{user}" in url_path:
        prefix, suffix = url_path.split("{user}")
        prefix += "bench-u"
    else:
        prefix = suffix = ""
        users = 0
    header_lines = "\n".join(f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items())
    path.write_text(
        LUA
        % {
            "body": body.decode(),
            "headers": header_lines,
            "users": users,
            "prefix": prefix,
            "suffix": suffix,
            "limit": limit,
            "mark": MARK,
        }
    )
    return path


def run(
    binary: str,
    base_url: str,
    script: Path,
    *,
    connections: int,
    duration_s: float,
    timeout_s: float = 10,
    pin: bool = True,
) -> dict:
    """One wrk run (one thread, pinned to the load core). Latencies in ms."""
    argv = [
        binary,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        f"{int(timeout_s)}s",
        "-s",
        str(script),
        base_url,
    ]
    if pin:
        argv = ["taskset", "-c", str(LOAD_CPU), *argv]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    raw = json.loads(line[len(MARK) :])
    secs = raw["duration_us"] / 1e6
    errors = raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_status"] + raw["err_timeout"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "duration_s": round(secs, 3),
        "rps": round(raw["requests"] / secs, 1) if secs else 0.0,
        "errors": errors,
        "error_detail": {k[4:]: v for k, v in raw.items() if k.startswith("err_") and v},
        "latency_ms": {
            "p50": raw["p50_us"] / 1000,
            "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "p99_9": raw["p999_us"] / 1000,
            "max": raw["max_us"] / 1000,
            "mean": round(raw["mean_us"] / 1000, 3),
        },
    }
