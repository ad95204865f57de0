"""The writer through real database outages: a private PostgreSQL cluster is stopped and
started while rows flow. Every row must land exactly once; a bad row alone is rejected;
a full queue during an outage spills to the local journal, which is replayed."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.journal import JournalFile, encode
from aigate.store.migrate import upgrade
from aigate.store.outage import DatabaseUnavailable
from aigate.store.sinks import current_rollups, register_sinks
from aigate.store.writer import BatchWriter
from tests.pgcluster import pg_cluster, private_pg  # noqa: F401  (fixtures)
from tests.store.test_writer import count, log_row


async def _rollup_requests(engine) -> int:
    await current_rollups(engine)
    async with engine.connect() as conn:
        return (await conn.execute(select(func.coalesce(func.sum(t.usage_rollups.c.requests), 0)))).scalar_one()


async def _request_ids(engine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(t.usage_logs.c.request_id))).scalars())


async def _assert_each_once(engine, n: int) -> None:
    ids = await _request_ids(engine)
    assert len(ids) == n and sorted(ids) == sorted(str(1000 + i) for i in range(n))
    assert await _rollup_requests(engine) == n  # the rollups counted each row once too


def _writer(engine, tmp_path, **kw) -> BatchWriter:
    writer = BatchWriter(engine, journal_dir=tmp_path / "journal", flush_interval_s=0.02, max_backoff_s=0.2, **kw)
    register_sinks(writer)
    writer.start()
    return writer


@pytest.fixture
async def pg_engine(private_pg):  # noqa: F811
    engine = create_engine(private_pg.url, pool_size=4)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def test_rows_flowing_through_a_stop_and_start_all_land_once(private_pg, pg_engine, tmp_path):  # noqa: F811
    writer = _writer(pg_engine, tmp_path, batch_size=50)

    async def produce():
        for i in range(600):
            await writer.put("usage_log", log_row(i))
            await asyncio.sleep(0.002)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    await private_pg.astop("fast")
    await asyncio.sleep(1.0)
    assert writer.in_outage and writer.outage_retries > 0
    await private_pg.astart()
    await producer
    await asyncio.wait_for(writer.flush(through_outage=True), 30)
    await _assert_each_once(pg_engine, 600)
    assert writer.rows_rejected == 0
    await writer.stop()


async def test_server_shutting_down_keeps_the_rows(private_pg, pg_engine, tmp_path):  # noqa: F811
    """The old writer took "the database system is shutting down" for bad data and
    dropped the batch row by row."""
    import asyncpg

    writer = _writer(pg_engine, tmp_path)
    await writer.put("usage_log", log_row(0), wait=True)
    await pg_engine.dispose()  # the pool's connections go: the next flush must connect anew
    holder = await asyncpg.connect(private_pg.url)
    await private_pg.astop("smart", wait=False)  # refuses new connections while holder stays
    await asyncio.sleep(0.3)
    for i in range(1, 40):
        await writer.put("usage_log", log_row(i))
    await asyncio.sleep(1.0)
    assert writer.in_outage and writer.rows_rejected == 0
    await holder.close()
    await asyncio.to_thread(private_pg.wait_stopped)
    await private_pg.astart()
    await asyncio.wait_for(writer.flush(through_outage=True), 30)
    await _assert_each_once(pg_engine, 40)
    await writer.stop()


async def test_a_bad_row_is_rejected_alone_and_counted(db_url, tmp_path):
    """A value beyond int64 is a bad row on both drivers (asyncpg reports it as an
    InterfaceError, which once passed for an outage and was retried for ever)."""
    engine = create_engine(db_url)
    await upgrade(engine)
    writer = _writer(engine, tmp_path)
    bad = [log_row(900, input_tokens=2**70), log_row(901, code=None)]  # beyond int64; NOT NULL
    rows = [log_row(i) for i in range(20)]
    await asyncio.gather(*(writer.put("usage_log", r) for r in [*rows[:10], *bad, *rows[10:]]))
    await asyncio.wait_for(writer.flush(), 10)
    await _assert_each_once(engine, 20)
    assert writer.rows_rejected == 2 and not writer.in_outage
    await writer.stop()
    await engine.dispose()


async def test_full_queue_during_an_outage_spills_to_the_journal_and_replays(private_pg, pg_engine, tmp_path):  # noqa: F811
    writer = _writer(pg_engine, tmp_path, batch_size=10, queue_size=20)
    for i in range(5):
        await writer.put("usage_log", log_row(i))
    await writer.flush()
    await private_pg.astop("fast")
    await writer.put("usage_log", log_row(5))  # the writer finds the outage
    while not writer.in_outage:
        await asyncio.sleep(0.05)
    start = time.monotonic()
    # far more rows than the queue holds: no producer waits for the database
    await asyncio.wait_for(asyncio.gather(*(writer.put("usage_log", log_row(i)) for i in range(6, 300))), 5)
    assert time.monotonic() - start < 5
    assert writer.rows_journaled >= 300 - 6 - 20 - 10
    with pytest.raises(DatabaseUnavailable):  # a group commit does not hang either
        await asyncio.wait_for(writer.put("usage_log", log_row(300), wait=True), 5)
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(writer.flush(), 5)
    for _ in range(200):  # the spilled rows reach the file (fsync per batch) in the background
        journals = list((tmp_path / "journal").glob("*.jsonl"))
        if journals and journals[0].read_bytes().count(b"\n") == writer.rows_journaled:
            break
        await asyncio.sleep(0.05)
    assert len(journals) == 1 and journals[0].read_bytes().count(b"\n") == writer.rows_journaled
    await private_pg.astart()
    await asyncio.wait_for(writer.flush(through_outage=True), 30)
    await _assert_each_once(pg_engine, 301)
    assert journals[0].stat().st_size == 0  # replayed, then truncated
    await writer.stop()
    assert not list((tmp_path / "journal").glob("*.jsonl"))  # and removed at a clean stop


async def test_shutdown_during_an_outage_keeps_the_rows_for_the_next_start(private_pg, pg_engine, tmp_path):  # noqa: F811
    writer = _writer(pg_engine, tmp_path, batch_size=10)
    await private_pg.astop("fast")
    for i in range(40):  # in the batch being retried and in the queue
        await writer.put("usage_log", log_row(i))
    while not writer.in_outage:
        await asyncio.sleep(0.05)
    await writer.stop(timeout_s=0.5)  # the database is still down at the deadline
    [journal] = (tmp_path / "journal").glob("*.jsonl")
    assert journal.read_bytes().count(b"\n") == 40
    await private_pg.astart()
    await pg_engine.dispose()
    restarted = _writer(pg_engine, tmp_path)  # the next start replays the stopped process's journal
    await asyncio.wait_for(restarted.flush(through_outage=True), 30)
    await _assert_each_once(pg_engine, 40)
    assert not journal.exists()
    await restarted.stop()


async def test_a_dead_process_journal_is_replayed_at_start_without_duplicates(db_url, tmp_path):
    """A crash after a replayed chunk committed but before the journal was truncated: the
    next start replays only what the database has not seen (the progress row says)."""
    engine = create_engine(db_url)
    await upgrade(engine)
    journal = JournalFile.create(tmp_path / "journal")
    journal.append(encode([(i + 1, "usage_log", log_row(i)) for i in range(30)]))
    journal.append(b'{"s": 31, "k": "usage_log", "r": {"request_')  # torn by the crash
    journal.close()  # the process is gone: its lock is free
    first = _writer(engine, tmp_path / "other")
    for i in range(10):  # what the crashed replay had already committed, with its progress
        await first.put("usage_log", log_row(i))
    await first.flush()
    await first.stop()
    async with engine.begin() as conn:
        await conn.execute(t.writer_journal.insert().values(name=journal.name, replayed_through=10))

    writer = _writer(engine, tmp_path)
    await writer.flush()
    await _assert_each_once(engine, 30)
    assert not journal.path.exists()
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.writer_journal))).scalar_one() == 0
    await writer.stop()
    await engine.dispose()


async def test_a_live_process_journal_is_left_to_it(db_url, tmp_path):
    engine = create_engine(db_url)
    await upgrade(engine)
    live = JournalFile.create(tmp_path / "journal")  # still locked: its owner runs
    live.append(encode([(1, "usage_log", log_row(0))]))
    writer = _writer(engine, tmp_path)
    await writer.flush()
    assert await count(engine) == 0 and live.path.exists()
    await writer.stop()
    live.close()
    await engine.dispose()


def test_journal_lines_keep_money_exact_and_skip_what_cannot_be_serialised(tmp_path):
    from decimal import Decimal

    journal = JournalFile.create(tmp_path)
    journal.append(
        encode(
            [
                (1, "usage_log", {"used_amount": Decimal("0.000000123456")}),
                (2, "usage_log", {"bad": object()}),
                (3, "user", {"user_id": "u\x00"}),
            ]
        )
    )
    assert journal.read(10) == [(1, "usage_log", {"used_amount": "0.000000123456"}), (3, "user", {"user_id": "u\x00"})]
    journal.close()
