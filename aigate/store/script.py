"""Short transactions written once, as plain SQL, and run in one round trip.

A *transaction script* is a synchronous function ``fn(db, *args)`` that issues SQL
through ``db.rows(sql, params)`` (named ``:params``, valid on SQLite and PostgreSQL; on
SQLite bound by position, ``aigate.store.sqlite_params``) and raises to roll back.
``run_script`` runs it in a single transaction:

* on SQLite, a request's script runs **inline**, on the event loop's own thread, when
  the one connection is idle (no hop running, no read holding it) and requests' scripts
  have been arriving one at a time, or alone right after the background hop it waited
  for: a transaction of ~0.1-0.2 ms of SQLite work costs less than the two thread
  hand-offs around it (at concurrency 1 they were half of the wait for the script,
  bench/CHANGES.md). It never waits for a lock on the loop: if another connection
  holds the write lock it goes to the lane. Otherwise scripts run
  inside the aiosqlite connection's own thread, in **one** hop — going through
  SQLAlchemy costs about four thread hops per statement, which dominated the hot
  path's CPU (GIL hand-offs on every hop). Scripts submitted while a batch runs wait
  in a lane and run together in the next hop, each in its own SAVEPOINT (a script that
  raises rolls back alone) under one COMMIT: group commit for SQLite's single writer.
  Once a hop has run two requests' scripts together, requests' scripts keep going to the
  lane for ``GROUP_COMMIT_HOLD_S``, so concurrent traffic keeps its group commits.
  Work no request waits on (``run_background``: the writer's flushes and upkeep) yields
  to requests' scripts waiting beside it, which get a hop of their own first; a long
  background script calls ``db.yield_point()`` as it goes, and stops at that consistent
  point when a request's script started waiting, so that script waits for a few rows,
  not a whole flush. Upkeep SQLite refuses inside a transaction (a WAL checkpoint) runs
  through ``run_maintenance``, in a hop of its own between two transactions. Background
  work takes turns (``background_turn``): a flush or upkeep step never runs while the
  checkpointer copies the WAL in its thread, since a request's script that waited for
  such a hop while the copy took the core waited several times longer;
* elsewhere, through SQLAlchemy's ``run_sync`` on the async connection (asyncpg has no
  thread to hop to).

This is the only module that reaches into aiosqlite's internals (``_execute`` and
``_conn``, unchanged since aiosqlite 0.17; the connection is opened with
``check_same_thread=False``, SQLAlchemy's default for a file); the tests run every
script on both databases.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from aigate.store.db import SQLITE_BUSY_TIMEOUT_MS
from aigate.store.sqlite_params import no_value_for, positional

T = TypeVar("T")


class SqliteDb:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, requests_waiting: Callable[[], bool]) -> None:
        self._conn = conn
        self._requests_waiting = requests_waiting

    def yield_point(self) -> bool:
        """Called by a long background script between two consistent points. It lets a
        thread waiting for the CPU run first (on a busy core the event loop would wait
        for the rest of this thread's time slice), and tells whether a request's script
        waits for this connection: then the script should stop and let its transaction
        commit."""
        os.sched_yield()
        return self._requests_waiting()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        statement, pick = positional(sql)
        try:
            bound = pick(params or {})
        except KeyError as missing:
            raise no_value_for(missing) from None
        return self._conn.execute(statement, bound).fetchall()

    def many(self, sql: str, params: list[dict[str, Any]]) -> None:
        if params:
            statement, pick = positional(sql)
            try:
                self._conn.executemany(statement, map(pick, params))
            except KeyError as missing:
                raise no_value_for(missing) from None


class SqlAlchemyDb:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    @staticmethod
    def yield_point() -> bool:
        return False  # a server database: a request's transaction does not wait for this one

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        result = self._conn.execute(_text(sql), params or {})
        return [tuple(r) for r in result] if result.returns_rows else []

    def many(self, sql: str, params: list[dict[str, Any]]) -> None:
        if params:
            self._conn.execute(_text(sql), params)


@lru_cache(maxsize=256)
def _text(sql: str):
    return text(sql)  # one TextClause per statement, so SQLAlchemy's compiled cache hits


def _run_batch(
    conn: sqlite3.Connection, batch: list[tuple[Callable, tuple]], requests_waiting: Callable[[], bool]
) -> list[tuple[bool, Any]]:
    """Run every script of the batch in one transaction; each one's outcome separately."""
    conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks
    outcomes: list[tuple[bool, Any]] = []
    try:
        db = SqliteDb(conn, requests_waiting)
        for fn, args in batch:
            conn.execute("SAVEPOINT script")
            try:
                outcomes.append((True, fn(db, *args)))
                conn.execute("RELEASE script")
            except Exception as exc:
                conn.execute("ROLLBACK TO script")
                conn.execute("RELEASE script")
                outcomes.append((False, exc))
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return outcomes


# After a hop that ran two or more requests' scripts together, requests' scripts go to the
# lane for this long even when it is idle: they arrive faster than one at a time, and
# batching them saves a commit each.
GROUP_COMMIT_HOLD_S = 0.1


class _NotNow(Exception):
    """An inline script could not start at once (the pool replaced the connection, or
    another connection holds the write lock); it did not run. The lane runs it, and its
    hop finds the pool's connection again."""


def _run_inline(conn: sqlite3.Connection, fn: Callable, args: tuple) -> Any:
    """Run one script in a transaction of its own, on the calling (event loop's) thread.
    It never waits for a lock: another connection's write lock raises ``_NotNow``."""
    try:
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    except (sqlite3.ProgrammingError, sqlite3.OperationalError) as exc:  # closed; "database is locked"
        raise _NotNow() from exc
    try:
        result = fn(SqliteDb(conn, _no_requests_waiting), *args)
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


def _no_requests_waiting() -> bool:
    return False  # an inline script runs on the event loop: nothing can wait beside it


class _SqliteLane:
    """Serialises one engine's scripts and runs whatever is waiting as one batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.waiting: list[tuple[Callable, tuple, asyncio.Future, bool]] = []  # (..., background)
        self.maintenance: list[tuple[Callable, tuple, asyncio.Future, bool]] = []  # outside transactions
        self.draining = False
        self.deferred = False  # background work was held back once for a request's scripts
        self.maintenance_held = False  # maintenance was held back once for a request's scripts
        # an in-memory database's connection is bound to aiosqlite's thread (check_same_thread)
        self.file = engine.url.database not in (None, "", ":memory:")
        self.conn: sqlite3.Connection | None = None  # the pool's connection, as the last hop found it
        self.batching_until = 0.0  # requests' scripts go to the lane until then (GROUP_COMMIT_HOLD_S)
        self.background_turn = asyncio.Lock()  # background_turn()

    async def submit(self, fn: Callable, args: tuple, background: bool = False, maintenance: bool = False) -> Any:
        future = asyncio.get_running_loop().create_future()
        background = background or maintenance  # neither ever runs inline
        item = (fn, args, future, background)
        if not background and self._idle():
            assert self.conn is not None  # _idle
            if self._ran_inline(self.conn, item):
                await asyncio.sleep(0)  # a loop of scripts still lets other tasks run
                return future.result()
        (self.maintenance if maintenance else self.waiting).append(item)
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _idle(self) -> bool:
        """Whether a request's script can run inline now: no hop is running or due, no
        one has the connection checked out (a read), and requests' scripts have been
        arriving one at a time."""
        return (
            not self.draining
            and self.conn is not None
            and cast(QueuePool, self.engine.pool).checkedout() == 0  # create_engine: one pooled connection
            and asyncio.get_running_loop().time() >= self.batching_until
        )

    def requests_waiting(self) -> bool:
        """Whether a request's script waits for the next hop (read from the database
        thread between the rows of a background script: a stale answer only moves the
        point where it stops)."""
        return any(not w[3] for w in self.waiting)

    def _next(self, deferred: bool) -> tuple[list[tuple[Callable, tuple, asyncio.Future, bool]], bool]:
        """What the next hop runs: everything waiting, except that a request's scripts
        waiting beside background work (the writer's) first get a hop of their own, so a
        request never waits for a flush that had not started. Background work deferred
        once runs in the next hop whatever arrives: it is never starved."""
        waiting = self.waiting
        if not deferred and any(w[3] for w in waiting) and not all(w[3] for w in waiting):
            self.waiting = [w for w in waiting if w[3]]
            return [w for w in waiting if not w[3]], True
        self.waiting = []
        return waiting, False

    async def _drain(self) -> None:
        """Run hops while scripts wait, on one pooled connection checked out for the whole
        run (a checkout per hop cost a pool round trip and a greenlet switch each)."""
        self.deferred = False
        try:
            while self.waiting or self.maintenance:
                try:
                    async with self.engine.connect() as conn:
                        aio = (await conn.get_raw_connection()).driver_connection
                        assert aio is not None  # a connection checked out of the pool is open
                        if self.file:
                            self.conn = aio._conn
                        await self._hops(aio)
                except Exception as exc:  # no connection: whatever waits fails with the reason
                    batch, self.waiting, self.maintenance = self.waiting + self.maintenance, [], []
                    _resolve(batch, [(False, exc)] * len(batch))
        finally:
            self.draining = False

    async def _hops(self, aio: Any) -> None:
        """Hops on one aiosqlite connection while scripts wait; after a failed commit the
        caller takes a fresh connection for the next one."""
        after_background = False  # the last hop ran background work or maintenance
        while self.waiting or self.maintenance:
            if self.maintenance and (self.maintenance_held or not self.requests_waiting()):
                self.maintenance_held = False
                fn, args, future, _ = item = self.maintenance.pop(0)
                try:  # a hop of its own, outside any transaction
                    outcome = (True, await aio._execute(fn, aio._conn, *args))
                except Exception as exc:
                    outcome = (False, exc)
                _resolve([item], [outcome])
                after_background = True
                continue
            self.maintenance_held = bool(self.maintenance)  # requests' scripts first, once
            batch, self.deferred = self._next(self.deferred)
            if sum(1 for w in batch if not w[3]) >= 2:
                self.batching_until = asyncio.get_running_loop().time() + GROUP_COMMIT_HOLD_S
            alone = after_background and len(batch) == 1 and not batch[0][3]
            after_background = any(w[3] for w in batch)
            if alone and self.file and self._ran_inline(aio._conn, batch[0]):
                await self._requests_first()
                continue
            try:
                scripts = [(fn, args) for fn, args, _, _ in batch]
                outcomes = await aio._execute(_run_batch, aio._conn, scripts, self.requests_waiting)
            except BaseException as exc:  # the commit itself failed: nothing was written
                _resolve(batch, [(False, exc)] * len(batch))
                return
            _resolve(batch, outcomes)
            if not after_background:
                await self._requests_first()

    async def _requests_first(self) -> None:
        """Before a next hop of background work only, let the requests whose scripts were
        just resolved run on to their next wait: the database thread woken for that hop
        would otherwise take the one busy core from them (a request's script answered in
        0.2 ms resumed up to a millisecond later, behind a flush; bench/CHANGES.md). A next
        hop with requests' scripts in it starts at once."""
        if (self.waiting or self.maintenance) and not self.requests_waiting():
            await asyncio.sleep(0)

    @staticmethod
    def _ran_inline(conn: sqlite3.Connection, item: tuple[Callable, tuple, asyncio.Future, bool]) -> bool:
        """Run a request's script on the loop's thread (the connection is idle, or free
        again after the background hop the script waited for alone) and resolve its
        future; False if it cannot start at once: the lane runs it."""
        fn, args, future, _ = item
        try:
            outcome = (True, _run_inline(conn, fn, args))
        except _NotNow:
            return False
        except Exception as exc:
            outcome = (False, exc)
        _resolve([item], [outcome])
        return True


def _resolve(batch: list[tuple[Callable, tuple, asyncio.Future, bool]], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, _, future, _), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_LANES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lane(engine: AsyncEngine) -> _SqliteLane:
    lane = _LANES.get(engine.sync_engine)
    if lane is None:
        lane = _LANES[engine.sync_engine] = _SqliteLane(engine)
    return lane


async def run_maintenance(engine: AsyncEngine, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on SQLite's writer connection outside any
    transaction, in a hop of its own, for upkeep SQLite refuses inside a transaction (a
    WAL checkpoint). A request's scripts waiting at the same time run first, once."""
    assert engine.dialect.name == "sqlite", "maintenance of SQLite's writer connection"
    return await _lane(engine).submit(fn, args, maintenance=True)


async def run_background(engine: AsyncEngine, fn: Callable[..., T], *args: Any) -> T:
    """``run_script`` for work no request waits on (the writer's flushes and upkeep): on
    SQLite, requests' scripts waiting at the same time run first."""
    if engine.dialect.name == "sqlite":
        lane = _lane(engine)
        async with lane.background_turn:
            return await lane.submit(fn, args, background=True)
    return await run_script(engine, fn, *args)


def background_turn(engine: AsyncEngine) -> asyncio.Lock:
    """Held by each piece of a SQLite engine's background work while it runs: a
    ``run_background`` script, or a round of the WAL checkpointer (aigate.store.checkpoint),
    so they run one at a time. On one busy core a flush hop that ran beside the
    checkpointer's copy took several times as long, and so did the wait of a request's
    script that came in meanwhile (bench/CHANGES.md)."""
    return _lane(engine).background_turn


async def run_script(engine: AsyncEngine, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(db, *args)`` in one transaction and return its result."""
    if engine.dialect.name == "sqlite":
        return await _lane(engine).submit(fn, args)
    async with engine.begin() as conn:
        return await conn.run_sync(lambda sync_conn: fn(SqlAlchemyDb(sync_conn), *args))
