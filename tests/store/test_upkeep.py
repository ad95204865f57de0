"""The writer's upkeep over new log rows (aigate.store.upkeep.WatermarkUpkeep): when a
step runs while the writer is busy."""

from __future__ import annotations

import pytest

from aigate.store.db import create_engine
from aigate.store.script import run_script
from aigate.store.upkeep import Handled, WatermarkUpkeep


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/aigate.db")
    await run_script(engine, lambda db: None)
    yield engine
    await engine.dispose()


async def test_a_batch_cut_short_goes_on_at_the_next_step_however_few_rows_are_new(engine):
    outcomes = iter([Handled(32, True), Handled(10, False), Handled(300, False)])
    limits: list[int] = []

    def batch(db, limit: int) -> Handled:
        limits.append(limit)
        return next(outcomes)

    written = [0]
    steps = WatermarkUpkeep(engine, lambda: written[0], batch, batch_rows=512, min_rows=256)
    assert await steps.step(busy=True) is True  # the first step: what an earlier run left; cut short
    assert await steps.step(busy=True) is False  # no new rows, but the last batch left more
    assert await steps.step(busy=True) is False  # caught up: busy, and fewer than 256 new rows
    assert limits == [512, 512]
    written[0] = 256
    assert await steps.step(busy=True) is False  # 256 new rows
    assert limits == [512, 512, 512]
