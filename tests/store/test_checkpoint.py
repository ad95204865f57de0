"""SQLite's WAL checkpoints off the commit path (aigate.store.checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from aigate.app import start_services, stop_services
from aigate.config.loader import parse_config
from aigate.store import checkpoint
from aigate.store.checkpoint import start_checkpointer
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.script import run_background, run_maintenance, run_script
from tests.gateway import base_config


def _insert(db, n: int | str) -> None:
    db.many(
        "INSERT INTO kv (k, v) VALUES (:k, :v)",
        [{"k": f"{n}-{i}", "v": "x" * 200} for i in range(50)],
    )


async def _commits(engine, first: int, count: int) -> None:
    for n in range(first, first + count):
        await run_script(engine, _insert, n)


def _wal_frames(path: str) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint from an outside connection reports them)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames


def _count_finishes(monkeypatch) -> list[tuple]:
    """Every hop of the writer's lane the checkpointer takes (its finishes), as it happens."""
    finishes: list[tuple] = []
    finish = checkpoint.run_maintenance

    async def counted(*args):
        finishes.append(args)
        return await finish(*args)

    monkeypatch.setattr(checkpoint, "run_maintenance", counted)
    return finishes


@pytest.fixture
async def wal(tmp_path):
    """A SQLite file with a table to write, and the checkpointer taking over."""
    path = str(tmp_path / "aigate.db")
    engine = create_engine(f"sqlite:///{path}")
    await upgrade(engine)
    await run_script(engine, lambda db: db.rows("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"))
    # the tests run the rounds themselves: the task's own rounds would race theirs
    checkpointer = await start_checkpointer(engine, interval_s=3600)
    assert checkpointer is not None
    yield path, engine, checkpointer
    await checkpointer.stop()
    await engine.dispose()
    checkpointer.close()


async def test_checkpoints_leave_the_commits_and_the_wal_starts_over(wal):
    path, engine, checkpointer = wal
    wal_file = Path(f"{path}-wal")
    [(auto,)] = await run_script(engine, lambda db: db.rows("PRAGMA wal_autocheckpoint"))
    assert auto == 0  # no commit checkpoints any more

    # 300 commits: SQLite would have checkpointed inside some of them
    await _commits(engine, 0, 300)
    grown = wal_file.stat().st_size
    assert grown > 4096 * 1000  # past the 1,000 pages where a commit would checkpoint

    assert await checkpointer.checkpoint() is True
    assert checkpointer.finished == 1
    await _commits(engine, 300, 1)  # the next commit starts the WAL over
    assert _wal_frames(path) < 50

    # three more rounds: the file stays about one round's size (without the restarts
    # it would hold all four)
    for r in range(3):
        await _commits(engine, 400 + r * 300, 300)
        assert await checkpointer.checkpoint() is True
    assert wal_file.stat().st_size < 1.5 * grown
    [(rows,)] = await run_script(engine, lambda db: db.rows("SELECT count(*) FROM kv"))
    assert rows == (300 + 1 + 900) * 50


async def test_an_idle_database_takes_no_hop_of_the_writers_lane(wal, monkeypatch):
    """With nothing committed since the last round, a round only looks at the WAL."""
    _path, engine, checkpointer = wal
    finishes = _count_finishes(monkeypatch)
    await _commits(engine, 0, 20)
    assert await checkpointer.checkpoint() is True
    assert len(finishes) == 1
    for _ in range(3):  # idle
        assert await checkpointer.checkpoint() is True
    assert len(finishes) == 1
    await _commits(engine, 20, 1)  # a commit (it starts the WAL over): the next round finishes
    assert await checkpointer.checkpoint() is True
    assert len(finishes) == 2


async def test_background_work_waits_for_the_copy_and_requests_scripts_do_not(wal, monkeypatch):
    """A flush or upkeep step never runs beside the checkpointer's copy; a request's
    script does (script.background_turn)."""
    _path, engine, checkpointer = wal
    await _commits(engine, 0, 5)
    copying, release = threading.Event(), threading.Event()
    copy = checkpoint.WalCheckpointer._copy

    def held_copy(self, sync):
        copying.set()
        release.wait(10)
        return copy(self, sync)

    monkeypatch.setattr(checkpoint.WalCheckpointer, "_copy", held_copy)
    round_ = asyncio.create_task(checkpointer.checkpoint())
    assert await asyncio.to_thread(copying.wait, 10)
    ran: list[str] = []
    background = asyncio.create_task(run_background(engine, lambda db: ran.append("background")))
    await asyncio.wait_for(run_script(engine, lambda db: ran.append("request")), 5)
    await asyncio.sleep(0.2)
    assert ran == ["request"]  # the background script still waits for the round
    release.set()
    assert await asyncio.wait_for(round_, 10) is True
    await asyncio.wait_for(background, 5)
    assert ran == ["request", "background"]


async def test_the_wal_starts_over_while_commits_go_on(wal):
    """Commits never stop here, so only a finish where no commit can land (between two of
    the writer's transactions) leaves the whole WAL copied and lets it start over."""
    path, engine, checkpointer = wal
    stop = asyncio.Event()
    commits = 0

    async def commit_until_stopped() -> None:
        nonlocal commits
        while not stop.is_set():
            await run_script(engine, _insert, f"bg{commits}")
            commits += 1

    committing = asyncio.create_task(commit_until_stopped())
    try:
        for _ in range(20):
            await asyncio.sleep(0.05)
            assert await checkpointer.checkpoint() is True
        stop.set()
        await committing
        # ~50 ms of commits since the last start-over, against all of them without one
        assert _wal_frames(path) < commits * 3 / 4
    finally:
        stop.set()
        await committing


async def test_copies_between_finishes_take_no_hop_of_the_writers_lane(wal, monkeypatch):
    """A round without a finish only copies, beside the writer: requests never wait for
    it. Frames the copy could not reach (a reader holds an older snapshot) wait for a
    later round."""
    path, engine, checkpointer = wal
    finishes = _count_finishes(monkeypatch)
    await _commits(engine, 0, 20)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM kv").fetchone()  # a snapshot of these 20
        await _commits(engine, 20, 20)
        assert await checkpointer.checkpoint(finish=False) is False
        assert len(finishes) == 0
    assert await checkpointer.checkpoint(finish=False) is True  # the reader is gone
    assert len(finishes) == 0
    await _commits(engine, 40, 20)
    assert await checkpointer.checkpoint() is True
    assert len(finishes) == 1 and checkpointer.finished == 1


async def test_the_running_task_lets_the_wal_start_over_while_commits_go_on(tmp_path):
    """Copies alone never let the WAL start over, even one that reaches its end: only a
    finish on the writer's connection does. The task's own rounds finish while commits
    never stop, and the WAL starts over after them."""
    path = str(tmp_path / "aigate.db")
    engine = create_engine(f"sqlite:///{path}")
    await upgrade(engine)
    await run_script(engine, lambda db: db.rows("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"))
    checkpointer = await start_checkpointer(engine, interval_s=0.01, finish_interval_s=0.05)
    loop = asyncio.get_running_loop()
    try:
        commits, deadline = 0, loop.time() + 60  # ~0.05 s a finish; a busy machine's syncs are slower
        while checkpointer.finished < 3 and loop.time() < deadline:
            await run_script(engine, _insert, f"c{commits}")
            commits += 1
        assert checkpointer.finished >= 3
        await _commits(engine, commits, 1)  # a commit after the last finish starts the WAL over
        assert _wal_frames(path) < 50  # a commit or two (without a start-over: all of them)
    finally:
        await checkpointer.stop()
        await engine.dispose()
        checkpointer.close()


async def test_the_task_finishes_once_per_finish_interval_and_retries_a_failed_finish(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path / 'aigate.db'}")
    await upgrade(engine)
    rounds: list[bool] = []
    # the 1st round's copy reaches the WAL's end (only a finish lets the WAL start over);
    # the 4th round's finish fails (a reader's old snapshot), the 5th round's does not
    outcomes = iter([True, False, False, False, True, False, False, False, True])

    async def recorded(self, *, finish: bool = True) -> bool:
        rounds.append(finish)
        return next(outcomes, True)

    monkeypatch.setattr(checkpoint.WalCheckpointer, "checkpoint", recorded)
    checkpointer = await start_checkpointer(engine, interval_s=0.001, finish_interval_s=0.004)
    try:
        for _ in range(500):
            if len(rounds) >= 9:
                break
            await asyncio.sleep(0.005)
    finally:
        await checkpointer.stop()
        await engine.dispose()
        checkpointer.close()
    assert rounds[:9] == [False, False, False, True, True, False, False, False, True]


def _descriptors_of(path: str) -> int:
    return sum(1 for fd in os.listdir("/proc/self/fd") if _target(fd) == path)


def _target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed meanwhile (the listing's own descriptor)
        return None


async def test_the_copy_syncs_the_database_file_in_its_own_thread(wal, monkeypatch):
    """What the copy wrote is synced beside the writer: the finish that requests may wait
    for syncs only the few pages it copied itself."""
    path, engine, checkpointer = wal
    synced: list[tuple[str, str | None]] = []
    real_sync = os.fdatasync

    def recording_sync(fd: int) -> None:
        synced.append((threading.current_thread().name, _target(str(fd))))
        real_sync(fd)

    monkeypatch.setattr("aigate.store.checkpoint.os.fdatasync", recording_sync)
    await _commits(engine, 0, 50)
    assert await checkpointer.checkpoint() is True
    assert len(synced) == 1
    thread, target = synced[0]
    assert thread.startswith("wal-checkpoint") and target == path

    synced.clear()
    assert await checkpointer.checkpoint() is True  # nothing committed since: nothing to sync
    assert synced == []

    # copies between finishes leave the sync to the copy before the next finish: the WAL,
    # synced before each copy, holds every page they wrote until then
    await _commits(engine, 50, 20)
    assert await checkpointer.checkpoint(finish=False) is True
    await _commits(engine, 70, 20)
    assert await checkpointer.checkpoint(finish=False) is True
    assert synced == []
    assert await checkpointer.checkpoint() is True
    assert len(synced) == 1 and synced[0][0].startswith("wal-checkpoint")


async def test_closing_leaves_no_descriptor_of_the_database_file(tmp_path):
    path = str(tmp_path / "aigate.db")
    engine = create_engine(f"sqlite:///{path}")
    await upgrade(engine)
    checkpointer = await start_checkpointer(engine)
    assert checkpointer is not None
    await run_script(engine, lambda db: db.rows("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"))
    await _commits(engine, 0, 5)
    assert await checkpointer.checkpoint() is True
    await checkpointer.stop()
    await engine.dispose()
    assert _descriptors_of(path) == 1  # the one the sync uses, kept past the engine's
    checkpointer.close()
    assert _descriptors_of(path) == 0


async def test_the_gateway_closes_the_descriptor_when_it_stops(tmp_path):
    path = str(tmp_path / "aigate.db")
    cfg = parse_config(base_config(f"sqlite:///{path}", "http://127.0.0.1:9"))
    services = await start_services(cfg)
    assert services.checkpointer is not None
    await services.checkpointer.checkpoint()  # the descriptor opens with the first copy
    await stop_services(services)
    gc.collect()  # SQLite connections caught in reference cycles close when collected
    assert _descriptors_of(path) == 0


async def test_maintenance_runs_between_the_writers_transactions(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/aigate.db")
    await upgrade(engine)
    started, go = threading.Event(), threading.Event()
    seen: list[tuple[str, bool]] = []

    def request_script(db):  # holds the lane's hop until the maintenance is queued
        started.set()
        go.wait(10)
        seen.append(("script", True))

    def maintenance(conn: sqlite3.Connection) -> str:
        seen.append(("maintenance", conn.in_transaction))
        return "done"

    try:
        request = asyncio.create_task(run_script(engine, request_script))
        await asyncio.to_thread(started.wait, 10)
        queued = asyncio.create_task(run_maintenance(engine, maintenance))
        await asyncio.sleep(0.05)
        assert seen == []  # not beside the running transaction
        go.set()
        await request
        assert await queued == "done"
        assert seen == [("script", True), ("maintenance", False)]
    finally:
        go.set()
        await engine.dispose()


async def test_a_reader_on_an_old_snapshot_only_postpones_the_finish(wal):
    path, engine, checkpointer = wal
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        await _commits(engine, 0, 20)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM kv").fetchone()  # holds the snapshot of 20 commits
        await _commits(engine, 20, 20)
        assert await checkpointer.checkpoint() is False  # frames past the reader's snapshot stay
        reader.execute("COMMIT")
        assert await checkpointer.checkpoint() is True
    finally:
        reader.close()


async def test_nothing_to_take_over_on_a_server_database_or_in_memory():
    engine = create_engine("sqlite:///:memory:")
    try:
        assert await start_checkpointer(engine) is None
    finally:
        await engine.dispose()
