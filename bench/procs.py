"""Starting, watching and stopping the benchmark's processes, and reading their CPU and
memory from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
GATEWAY_CPU = 0  # the process under test
LOAD_CPU = 1  # load generators and the simulator


def pinning_available() -> bool:
    return (os.cpu_count() or 1) >= 2 and Path("/usr/bin/taskset").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    cpu: int | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """Every process the harness started; ``stop_all`` ends them (also on errors)."""

    log_dir: Path
    pin: bool = True
    procs: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], *, cpu: int | None, env: dict | None = None, cwd: Path | None = None
    ) -> Proc:
        if cpu is not None and self.pin:
            argv = ["taskset", "-c", str(cpu), *argv]
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path, cpu)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 10) -> None:
        if proc in self.procs:
            self.procs.remove(proc)
        if not proc.alive():
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)  # the process and its children (own session)
            except ProcessLookupError:
                return
            try:
                proc.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def wait_http(
    proc: Proc, url: str, *, timeout: float = 60, headers: dict | None = None, ok=lambda status: status < 500
) -> None:
    """Wait until ``url`` answers with a status ``ok`` accepts; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if ok(resp.status):
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            if ok(exc.code):
                return
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout:.0f} s ({last}):\n{proc.log_tail()}")


def http_post(url: str, body: bytes, headers: dict, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- /proc readings -------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()  # fields from #3 (state) on


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds."""
    total = 0
    for p in tree(pid):
        fields = _stat_fields(p)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS), summed over ``pid`` and its descendants, in kB."""
    out = {"rss_kb": 0, "hwm_kb": 0}
    for p in tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                out["rss_kb"] += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm_kb"] += int(line.split()[1])
    return out


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy jiffies, total jiffies) from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            nums = [int(v) for v in vals]
            idle = nums[3] + (nums[4] if len(nums) > 4 else 0)
            out[int(name[3:])] = (sum(nums) - idle, sum(nums))
    return out


class Meter:
    """CPU of some processes and busy share of each core between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def start(self) -> Meter:
        self.t0 = time.monotonic()
        self.cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.cores0 = core_times()
        return self

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        cpu = {k: cpu_seconds(p) - self.cpu0[k] for k, p in self.pids.items()}
        cores1 = core_times()
        busy = {}
        for core, (b1, t1) in cores1.items():
            b0, t0 = self.cores0.get(core, (b1, t1))
            busy[f"core{core}"] = round(100 * (b1 - b0) / max(1, t1 - t0), 1)
        return {
            "wall_s": round(wall, 3),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_pct": {k: round(100 * v / wall, 1) for k, v in cpu.items()},
            "core_busy_pct": busy,
        }
