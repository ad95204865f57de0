"""On SQLite the writer adds log rows to the rollups after its commits; every admin read
that sums the rollups first adds the rows it has not added yet, so a row counts from the
moment it is written (aigate.store.sinks.current_rollups)."""

from __future__ import annotations

import pytest

from aigate.clock import now_ms
from aigate.store import tables as t
from aigate.store.script import run_script
from aigate.store.sinks import insert_usage_logs
from tests.api.test_admin_dashboard import HOUR, SIM_URL, log_row
from tests.gateway import APP_ID, base_config, start_gateway


@pytest.fixture
async def gw(db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite only: on PostgreSQL each flush adds its rows to the rollups")
    gateway = await start_gateway(base_config(db_url, SIM_URL))
    yield gateway
    await gateway.close()


async def get(gw, path: str, params: dict | None = None) -> dict:
    async with gw.session.get(gw.url + path, params=params, headers=gw.admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def rolled_behind(engine) -> int:
    sql = f"SELECT count(*) FROM usage_logs WHERE id > (SELECT rolled_through FROM {t.SQLITE_ROLLUP_STATE_TABLE})"
    [(n,)] = await run_script(engine, lambda db: db.rows(sql))
    return n


async def test_rows_the_writer_has_not_rolled_up_count_in_every_reader(gw):
    at = (now_ms() // HOUR - 3) * HOUR + 60_000  # in a whole hour: searches count it from the rollup
    rows = [log_row(at + 1_000 * i, user="reader-u", code=200 if i % 2 else 502) for i in range(5)]
    # inserted as the writer's flush inserts them, before its upkeep adds them to the rollups
    await run_script(gw.services.engine, insert_usage_logs, rows)
    assert await rolled_behind(gw.services.engine) == 5

    dashboard = (await get(gw, "/api/dashboard", {"start_timestamp": at - HOUR, "end_timestamp": at + HOUR}))["data"]
    assert dashboard["totals"]["requests"] == 5 and dashboard["totals"]["errors"] == 3
    assert await rolled_behind(gw.services.engine) == 0

    await run_script(gw.services.engine, insert_usage_logs, rows[:2])
    search = (await get(gw, "/api/logs/search", {"code_type": "error"}))["data"]
    assert search["total"] == 4  # the counts behind the total are a rollup too

    await run_script(gw.services.engine, insert_usage_logs, rows[:1])
    usage = (await get(gw, f"/api/apps/{APP_ID}/users/reader-u"))["data"]["usage"]
    assert usage["requests"] == 8 and usage["errors"] == 5
