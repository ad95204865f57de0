"""A private PostgreSQL cluster for tests that stop and start the database server.

``initdb`` (as the ``postgres`` OS user when the tests run as root) into a temporary
folder, its own port and socket directory, ``pg_ctl start/stop``: the shared server the
rest of the suite uses keeps running. Skips, with the reason, when no PostgreSQL binaries
are installed or the tests can act neither as root nor as ``postgres``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.gateway import free_port


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


class PgCluster:
    def __init__(self, bin_dir: str, as_postgres: bool) -> None:
        self.bin_dir = bin_dir
        self.as_postgres = as_postgres
        self.dir = Path(tempfile.mkdtemp(prefix="aigate-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = self.admin_url  # the current test's own database (see ``private_pg``)
        if as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [f"{self.bin_dir}/{args[0]}", *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"
        )

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c shared_buffers=16MB -c max_connections=60 -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast", wait: bool = True) -> None:
        """``fast`` ends every session; ``smart`` waits for them to end on their own, and
        meanwhile refuses new connections ("the database system is shutting down")."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-W" if not wait else "-w", "stop", check=wait)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def wait_stopped(self, timeout_s: float = 30) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-t", str(int(timeout_s)), "-w", "stop", check=False)

    def destroy(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, mode: str = "fast", wait: bool = True) -> None:
        await asyncio.to_thread(self.stop, mode, wait)


@pytest.fixture(scope="module")
def pg_cluster():
    """One private cluster per test module (``initdb`` costs seconds); each test gets its
    own database in it through ``private_pg``."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        cluster = PgCluster(bin_dir, as_postgres=True)
    elif pwd.getpwuid(os.geteuid()).pw_name == "postgres":
        cluster = PgCluster(bin_dir, as_postgres=False)
    else:
        pytest.skip("initdb needs the 'postgres' user (run the tests as root or postgres)")
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def private_pg(pg_cluster, request):
    """The module's private cluster, running, with a fresh database of this test's own as
    ``url``; the test may stop and start the server at will."""
    import asyncpg

    request.node.user_properties.append(("backends", "postgres"))
    if not await asyncio.to_thread(pg_cluster.running):
        await asyncio.to_thread(pg_cluster.wait_stopped)  # a smart shutdown may still be going
        await pg_cluster.astart()
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(pg_cluster.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    pg_cluster.url = pg_cluster.admin_url.rsplit("/", 1)[0] + "/" + name
    yield pg_cluster
    pg_cluster.url = pg_cluster.admin_url
