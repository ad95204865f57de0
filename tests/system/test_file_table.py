"""``aigate serve`` sizes its table of open files before its threads start: a table that
doubles later, in a process with threads, pauses the call that grows it (and the event
loop) for an RCU grace period."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from aigate import fdtable
from tests.gateway import base_config, free_port
from tests.served import serve

pytestmark = pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024, reason="a hard limit of open files below 1,024"
)


def fd_table_size(pid: int | str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("FDSize:"):
            return int(line.split()[1])
    raise AssertionError("no FDSize line")


def test_the_table_is_grown_to_the_raised_limit_at_once():
    # in a fresh process with a low soft limit: the limit goes up to the hard one (capped),
    # and the table holds that many descriptors while only a few are open
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    script = (
        "import resource; from aigate import fdtable; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
        "size = fdtable.raise_limit_and_grow(); "
        "table = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('FDSize:')); "
        "print(size, resource.getrlimit(resource.RLIMIT_NOFILE)[0], table)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    size, new_soft, table = map(int, out)
    expected = min(hard, fdtable.MAX_TABLE) if hard != resource.RLIM_INFINITY else fdtable.MAX_TABLE
    assert size == new_soft == expected and table >= expected > 256


async def test_a_served_gateway_holds_a_grown_table(tmp_path):
    port, sim_port = free_port(), free_port()
    doc = base_config(f"sqlite:///{tmp_path / 'aigate.db'}", f"http://127.0.0.1:{sim_port}")
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    proc = await serve(doc, tmp_path)
    try:
        open_now = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert open_now < 256 <= fd_table_size(proc.pid)
        assert fd_table_size(proc.pid) >= min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], fdtable.MAX_TABLE)
    finally:
        proc.terminate()
        await proc.wait()
