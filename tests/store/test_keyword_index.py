"""SQLite's keyword index kept off the insert path, and the writer's work yielding to
requests on the one connection.

The writer indexes new log rows in batches after its commits (aigate.store.log_index);
the keyword search finds rows whether they are indexed yet or not; deletes and updates
keep the FTS5 table consistent; a request's script waiting beside the writer's work
runs first."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import delete, select, update

from aigate.store import log_index
from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.log_index import BATCH_ROWS, index_new_rows, pending_rows
from aigate.store.logs_query import LogFilter, page_query
from aigate.store.migrate import upgrade
from aigate.store.script import run_background, run_script
from aigate.store.sinks import register_sinks
from aigate.store.user_erase import erase_user
from aigate.store.writer import BatchWriter
from tests.store.test_writer import log_row


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/aigate.db")
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def search(engine, keyword: str) -> set[str]:
    """Request ids the log search returns for ``keyword``."""
    async with engine.connect() as conn:
        rows = (await conn.execute(page_query(LogFilter(keyword=keyword), "sqlite", offset=0, limit=10_000))).all()
    return {r._mapping["request_id"] for r in rows}


async def insert_logs(engine, rows: list[dict]) -> None:
    """Rows as the writer inserts them, without the writer's upkeep (nothing indexed)."""
    from aigate.store.sinks import write_usage_logs

    await run_script(engine, write_usage_logs, rows)


async def fts_integrity(engine) -> None:
    """FTS5's own check that the index matches the content table (raises if not)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            f"INSERT INTO {t.SQLITE_FTS_TABLE} ({t.SQLITE_FTS_TABLE}) VALUES ('integrity-check')"
        )


async def fts_rowids(engine, keyword: str) -> set[int]:
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            f"SELECT rowid FROM {t.SQLITE_FTS_TABLE} WHERE {t.SQLITE_FTS_TABLE} MATCH ?", (f'"{keyword}"',)
        )
        return {r[0] for r in rows}


async def test_rows_not_yet_indexed_are_found_and_the_indexer_catches_up(engine):
    await insert_logs(engine, [log_row(i, content=f"needle-{i} in the error text") for i in range(30)])
    assert await run_script(engine, pending_rows) == 30
    assert await fts_rowids(engine, "needle") == set()  # nothing indexed yet
    assert await search(engine, "needle-1") == {str(1000 + i) for i in (1, *range(10, 20))}
    assert await search(engine, "NEEDLE-29") == {"1029"}  # case-insensitive like LIKE

    # indexed in batches: a small limit takes several steps, each moving the watermark
    assert await run_script(engine, index_new_rows, 20) == (20, True)
    assert await run_script(engine, pending_rows) == 10
    assert await search(engine, "needle-1") == {str(1000 + i) for i in (1, *range(10, 20))}  # half indexed
    assert await run_script(engine, index_new_rows, 20) == (10, False)
    assert await run_script(engine, index_new_rows, 20) == (0, False)
    assert await run_script(engine, pending_rows) == 0
    assert len(await fts_rowids(engine, "needle")) == 30
    assert await search(engine, "needle-29") == {"1029"}
    await fts_integrity(engine)


class RequestWaiting:
    """A transaction script's database as it is while a request's script waits for the
    connection: every ``yield_point`` says so."""

    def __init__(self, db) -> None:
        self.db = db
        self.dialect = db.dialect

    def rows(self, *args):
        return self.db.rows(*args)

    def many(self, *args):
        return self.db.many(*args)

    @staticmethod
    def yield_point() -> bool:
        return True


async def fts_config(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        return dict((await conn.exec_driver_sql(f"SELECT k, v FROM {t.SQLITE_FTS_TABLE}_config")).all())


async def fts_pages(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(f"SELECT count(*) FROM {t.SQLITE_FTS_TABLE}_data")).scalar_one()


async def test_the_indexer_merges_the_segments_fts5_no_longer_merges_itself(engine, monkeypatch):
    assert (await fts_config(engine))["automerge"] == 0  # migration 0019
    monkeypatch.setattr(log_index, "MERGE_STEPS", 0)
    for i in range(12):  # a segment per batch, none merged
        await insert_logs(engine, [log_row(i, content=f"needle {i}")])
        await run_script(engine, index_new_rows)
    unmerged = await fts_pages(engine)
    monkeypatch.setattr(log_index, "MERGE_STEPS", 4)
    # a request's script waiting stops the merging after one step, not the indexing
    await insert_logs(engine, [log_row(i, content=f"needle {i}") for i in range(12, 112)])
    assert await run_script(engine, lambda db: index_new_rows(RequestWaiting(db))) == (100, True)
    assert await run_script(engine, pending_rows) == 0
    while (await run_script(engine, index_new_rows)).more:
        pass
    assert await fts_pages(engine) < unmerged
    assert len(await fts_rowids(engine, "needle")) == 112
    await fts_integrity(engine)


async def test_the_writer_indexes_after_its_commits(engine):
    writer = BatchWriter(engine, flush_interval_s=0.01, batch_size=200)
    register_sinks(writer)
    writer.start()
    try:
        n = BATCH_ROWS * 2 + 50  # more than one indexing batch
        for i in range(n):
            await writer.put("usage_log", log_row(i, content=f"text {i}"))
        await writer.flush()
        for _ in range(200):  # the upkeep runs right after the flush that wrote the rows
            if await run_script(engine, pending_rows) == 0:
                break
            await asyncio.sleep(0.02)
        assert await run_script(engine, pending_rows) == 0
        assert len(await fts_rowids(engine, "text")) == n
        assert await search(engine, f"text {n - 1}") == {str(1000 + n - 1)}
        await fts_integrity(engine)
    finally:
        await writer.stop()


async def test_deletes_and_updates_keep_the_index_consistent(engine):
    await insert_logs(engine, [log_row(i, content=f"needle {i}") for i in range(10)])
    assert await run_script(engine, index_new_rows, 6) == (6, True)  # ids 1-6 indexed, 7-10 not
    logs = t.usage_logs.c
    async with engine.begin() as conn:
        # an indexed and an unindexed row deleted (as retention does)
        await conn.execute(delete(t.usage_logs).where(logs.request_id.in_(["1002", "1008"])))
        # an indexed and an unindexed row changed (as user erase does)
        await conn.execute(update(t.usage_logs).where(logs.request_id.in_(["1003", "1009"])).values(content="haystack"))
    await fts_integrity(engine)
    assert await fts_rowids(engine, "needle") == {1, 2, 5, 6}  # rowids: 3 and 4 left the index
    assert await run_script(engine, index_new_rows) == (3, False)  # 7, 9 (its new text) and 10; 8 is gone
    await fts_integrity(engine)
    assert await search(engine, "needle") == {str(1000 + i) for i in (0, 1, 4, 5, 6, 7)}
    assert await search(engine, "haystack") == {"1003", "1009"}


async def test_user_erase_keeps_the_index_consistent(engine):
    await insert_logs(engine, [log_row(i, user="alice", content=f"secret {i}") for i in range(6)])
    await run_script(engine, index_new_rows, 3)
    await erase_user(engine, "APP", "alice")
    await fts_integrity(engine)
    await run_script(engine, index_new_rows)
    await fts_integrity(engine)
    assert await search(engine, "secret") == set()
    assert await search(engine, "alice") == set()
    async with engine.connect() as conn:
        markers = set((await conn.execute(select(t.usage_logs.c.user))).scalars())
    [marker] = markers
    assert len(await search(engine, marker)) == 6


async def test_a_request_script_runs_before_background_work_waiting_beside_it(engine):
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def busy(db):  # holds the connection until released
        started.set()
        release.wait(10)
        order.append("busy")

    running = asyncio.ensure_future(run_script(engine, busy))
    assert await asyncio.to_thread(started.wait, 10)
    flush = asyncio.ensure_future(run_background(engine, lambda db: order.append("flush")))
    await asyncio.sleep(0)
    request = asyncio.ensure_future(run_script(engine, lambda db: order.append("request")))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(running, flush, request)
    assert order == ["busy", "request", "flush"]
