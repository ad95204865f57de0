"""Shared fixtures: a database per test on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("AIGATE_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("AIGATE_TEST_REDIS_URL", "")

BACKENDS = ["sqlite", "postgres"]


def pytest_report_header(config):
    return [
        f"aigate test backends: SQLite always; PostgreSQL {'at ' + PG_URL if PG_URL else 'OFF (AIGATE_TEST_POSTGRES_URL unset)'}; "
        f"Redis {'at ' + REDIS_URL if REDIS_URL else 'OFF (AIGATE_TEST_REDIS_URL unset)'}"
    ]


def pytest_terminal_summary(terminalreporter):
    passed = [r for r in terminalreporter.stats.get("passed", []) if r.when == "call"]
    used = [dict(r.user_properties).get("backends", "") for r in passed]
    on_pg = sum(1 for u in used if "postgres" in u)
    on_redis = sum(1 for u in used if "redis" in u)
    terminalreporter.write_line(f"aigate: {on_pg} tests passed on PostgreSQL, {on_redis} tests passed with Redis")


async def _pg_schema_url() -> tuple[str, str]:
    import asyncpg

    schema = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", schema


async def _drop_pg_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
async def db_url(request, tmp_path):
    """A fresh, empty database URL: SQLite in tmp_path, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/aigate.db"
        return
    if not PG_URL:
        pytest.skip("AIGATE_TEST_POSTGRES_URL is not set")
    _uses(request, "postgres")
    url, schema = await _pg_schema_url()
    try:
        yield url
    finally:
        await _drop_pg_schema(schema)


def _uses(request, backend: str) -> None:
    """Note on the test's report which real servers it ran against (see the summary)."""
    props = request.node.user_properties
    current = dict(props).get("backends", "")
    props[:] = [p for p in props if p[0] != "backends"] + [("backends", f"{current} {backend}".strip())]


@pytest.fixture
async def pg_url(request):
    """A fresh PostgreSQL schema, for tests that need several instances on one database."""
    if not PG_URL:
        pytest.skip("AIGATE_TEST_POSTGRES_URL is not set")
    _uses(request, "postgres")
    url, schema = await _pg_schema_url()
    try:
        yield url
    finally:
        await _drop_pg_schema(schema)


def _worker_redis_url() -> str:
    """Each xdist worker gets its own Redis database (15, 14, ...), so flushing it between
    tests never touches another worker's keys."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base, _, db = REDIS_URL.rpartition("/")
    return f"{base}/{max(int(db) - index, 0)}" if db.isdigit() else REDIS_URL


@pytest.fixture
async def redis_url(request):
    if not REDIS_URL:
        pytest.skip("AIGATE_TEST_REDIS_URL is not set")
    _uses(request, "redis")
    import redis.asyncio as aioredis

    url = _worker_redis_url()
    client = aioredis.from_url(url)
    await client.flushdb()
    await client.aclose()
    yield url


@pytest.fixture
async def simulator():
    from aigate.simulator.server import start_simulator

    handle = await start_simulator(port=0)
    try:
        yield handle
    finally:
        await handle.close()
