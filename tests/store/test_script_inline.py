"""SQLite: a request's script runs on the event loop's thread while the connection is idle
(aigate.store.script), and goes to the lane whenever running it there could wait."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time

import pytest

from aigate.store import script
from aigate.store.db import create_engine
from aigate.store.script import run_background, run_maintenance, run_script


def _create(db) -> None:
    db.rows("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")


def _put(db, k: str) -> int:
    """Insert a row; return the thread the script ran on."""
    db.rows("INSERT INTO kv (k, v) VALUES (:k, 'x')", {"k": k})
    return threading.get_ident()


def _keys(db) -> list[str]:
    return [k for (k,) in db.rows("SELECT k FROM kv ORDER BY k")]


@pytest.fixture
async def sqlite_engine(tmp_path):
    path = tmp_path / "aigate.db"
    engine = create_engine(f"sqlite:///{path}")
    await run_script(engine, _create)  # the first script goes through the lane: it meets the connection
    yield engine, str(path)
    await engine.dispose()


async def test_a_request_script_runs_on_the_event_loop_while_the_connection_is_idle(sqlite_engine):
    engine, _ = sqlite_engine
    loop_thread = threading.get_ident()
    assert await run_script(engine, _put, "a") == loop_thread
    assert await run_background(engine, _put, "b") != loop_thread  # the writer's work: the lane's thread
    assert await run_script(engine, _keys) == ["a", "b"]


async def test_a_failing_inline_script_rolls_back_alone(sqlite_engine):
    engine, _ = sqlite_engine

    def put_then_fail(db) -> None:
        _put(db, "lost")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await run_script(engine, put_then_fail)
    await run_script(engine, _put, "kept")
    assert await run_script(engine, _keys) == ["kept"]


async def test_a_request_script_waits_for_a_running_hop_in_the_lane(sqlite_engine):
    engine, _ = sqlite_engine
    release = threading.Event()

    def slow_background(db) -> None:
        _put(db, "bg")
        release.wait(5)

    background = asyncio.create_task(run_background(engine, slow_background))
    await asyncio.sleep(0.05)  # the hop is running in the lane's thread
    request = asyncio.create_task(run_script(engine, _put, "req"))
    await asyncio.sleep(0.05)
    assert not request.done()  # it did not run on the loop beside the open transaction
    release.set()
    await background
    # then, alone behind background work, on the loop's thread without a hop of its own
    assert await request == threading.get_ident()
    assert await run_script(engine, _keys) == ["bg", "req"]


async def test_scripts_arriving_together_keep_their_group_commit(sqlite_engine, monkeypatch):
    engine, _ = sqlite_engine
    batches: list[int] = []
    run_batch = script._run_batch

    def counted(conn, batch, *rest):
        batches.append(len(batch))
        return run_batch(conn, batch, *rest)

    monkeypatch.setattr(script, "_run_batch", counted)
    monkeypatch.setattr(script, "GROUP_COMMIT_HOLD_S", 60.0)  # however slow this machine is
    release = threading.Event()
    background = asyncio.create_task(run_background(engine, lambda db: release.wait(5)))
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(run_script(engine, _put, f"q{i}")) for i in range(4)]
    await asyncio.sleep(0.05)
    release.set()
    await background
    await asyncio.gather(*queued)
    assert batches[-1] == 4  # the four queued beside the hop ran as one batch
    # traffic that queued together goes on through the lane for a while, where it batches
    threads = await asyncio.gather(*(run_script(engine, _put, f"n{i}") for i in range(4)))
    assert threading.get_ident() not in threads
    assert len(batches) <= 4  # the first of the four may run alone; the rest batch


@pytest.mark.parametrize("requests", [1, 2])
async def test_requests_run_on_before_the_background_hop_queued_behind_them(sqlite_engine, requests):
    """Requests' scripts resolved by a hop (one inline after background work, or two in a
    hop of the lane) run on to their next wait before the lane starts the background
    work queued behind them: its thread would take the core from them."""
    engine, _ = sqlite_engine
    events: list[str] = []
    release = threading.Event()

    def background(db) -> None:
        events.append("background")

    async def request(i: int) -> None:
        await run_script(engine, _put, f"r{i}")
        time.sleep(0.05)  # the request's own work after its script, holding the loop
        events.append(f"request {i}")

    held = asyncio.create_task(run_maintenance(engine, lambda conn: release.wait(5)))
    await asyncio.sleep(0.05)  # the lane is busy: what follows queues
    queued = asyncio.create_task(run_background(engine, background))
    await asyncio.sleep(0.01)
    calls = [asyncio.create_task(request(i)) for i in range(requests)]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(held, queued, *calls)
    assert events == [*(f"request {i}" for i in range(requests)), "background"]


async def test_a_hop_of_requests_scripts_does_not_wait_for_the_requests_before_it(sqlite_engine):
    """Only background work waits for the requests just resolved to run on: requests'
    scripts queued meanwhile start their hop at once."""
    engine, _ = sqlite_engine
    events: list[str] = []
    queued, release, hop_running = threading.Event(), threading.Event(), threading.Event()

    def first(db) -> None:  # runs in the lane's thread until the next request has queued
        hop_running.set()
        release.wait(5)

    def second(db) -> None:
        events.append("second request's script")

    async def request() -> None:
        await run_script(engine, first)
        time.sleep(0.05)  # the first request's own work after its script, holding the loop
        events.append("first request")

    held = asyncio.create_task(run_maintenance(engine, lambda conn: queued.wait(5)))
    await asyncio.sleep(0.01)
    calls = [asyncio.create_task(request()), asyncio.create_task(run_script(engine, _put, "x"))]
    await asyncio.sleep(0.01)
    queued.set()
    assert await asyncio.to_thread(hop_running.wait, 5)  # first and _put: one hop in the thread
    calls.append(asyncio.create_task(run_script(engine, second)))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(held, *calls)
    assert events == ["second request's script", "first request"]


@contextlib.asynccontextmanager
async def _loop_ticks():
    """Counts 10 ms ticks of the event loop while the block runs: ``ticks[0]``."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticker = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


async def test_another_connections_write_lock_never_blocks_the_event_loop(sqlite_engine):
    engine, path = sqlite_engine
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another process's transaction, say
    try:
        async with _loop_ticks() as ticks:
            request = asyncio.create_task(run_script(engine, _put, "after-the-lock"))
            await asyncio.sleep(0.3)
            assert not request.done()
            assert ticks[0] >= 10  # the loop ran on while the script waited for the lock
            holder.rollback()
            assert await asyncio.wait_for(request, 5) != threading.get_ident()  # it waited in the lane's thread
    finally:
        holder.close()
    await asyncio.sleep(0.01)  # the lane hands the connection back to the pool
    assert await run_script(engine, _put, "inline-again") == threading.get_ident()


async def test_a_replaced_connection_is_not_used(sqlite_engine):
    engine, _ = sqlite_engine
    await run_script(engine, _put, "before")
    await engine.dispose()  # closes the pooled connection the lane last used
    await run_script(engine, _put, "after")  # the closed one is noticed; the lane takes the new one
    await asyncio.sleep(0.01)  # the lane hands the connection back to the pool
    assert await run_script(engine, _put, "inline") == threading.get_ident()
    assert await run_script(engine, _keys) == ["after", "before", "inline"]


async def test_an_in_memory_database_stays_in_the_lane(monkeypatch):
    tried = []
    run_inline = script._run_inline
    monkeypatch.setattr(script, "_run_inline", lambda *a: tried.append(a) or run_inline(*a))
    engine = create_engine("sqlite:///:memory:")
    try:
        await run_script(engine, _create)
        await asyncio.sleep(0.01)  # the lane hands the connection back to the pool
        assert await run_script(engine, _put, "m") != threading.get_ident()
        assert tried == []  # its connection belongs to aiosqlite's thread: not even tried
    finally:
        await engine.dispose()


async def test_a_script_behind_background_work_never_waits_for_a_lock_on_the_loop(sqlite_engine):
    engine, path = sqlite_engine
    holder = sqlite3.connect(path, check_same_thread=False)
    started, go = threading.Event(), threading.Event()

    def maintenance(conn) -> None:  # the lane's hop; another connection takes the write lock meanwhile
        started.set()
        go.wait(5)
        holder.execute("BEGIN IMMEDIATE")

    try:
        hop = asyncio.create_task(run_maintenance(engine, maintenance))
        assert await asyncio.to_thread(started.wait, 5)
        request = asyncio.create_task(run_script(engine, _put, "behind-the-hop"))
        await asyncio.sleep(0.05)
        go.set()
        await asyncio.wait_for(hop, 5)
        async with _loop_ticks() as ticks:
            await asyncio.sleep(0.3)
            assert not request.done()  # alone behind background work, but locked: not on the loop
            assert ticks[0] >= 10
        holder.rollback()
        assert await asyncio.wait_for(request, 5) != threading.get_ident()  # the lane's thread waited
    finally:
        go.set()
        holder.close()
    assert await run_script(engine, _keys) == ["behind-the-hop"]
