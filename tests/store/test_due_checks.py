"""The cheap checks the job poller and the webhook deliverer make before they claim
(``jobs._next_due_ms``, ``webhooks._any_due``): never "nothing due" while ``claim`` would
find a row, on both databases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import insert

from aigate.clock import now_ms
from aigate.engine import jobs, webhooks
from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade


@pytest.fixture
async def services(db_url):
    class Services:  # what the functions read
        engine = create_engine(db_url)
        snapshot = SimpleNamespace(platforms={})

    await upgrade(Services.engine)
    yield Services
    await Services.engine.dispose()


def _job(request_id: int, status: str, next_poll_ms: int | None, claim_until_ms: int | None = None) -> dict:
    return dict(
        request_id=request_id,
        app_id="app",
        user_id="u",
        from_appserver=True,
        module="image",
        strategy="s",
        status=status,
        created_ms=0,
        updated_ms=0,
        next_poll_ms=next_poll_ms,
        claimed_by="other" if claim_until_ms else None,
        claim_until_ms=claim_until_ms,
    )


async def test_the_next_due_time_of_jobs(services) -> None:
    now = now_ms()
    assert await jobs._next_due_ms(services) is None  # no job at all
    async with services.engine.begin() as conn:
        await conn.execute(
            insert(t.ai_requests),
            [
                _job(1, "succeeded", now - 60_000),  # finished: never due
                _job(2, "processing", now + 30_000),  # polled later
                _job(3, "queueing", now + 10_000, claim_until_ms=now + 20_000),  # leased past its poll time
            ],
        )
    assert await jobs._next_due_ms(services) == now + 10_000 + 10_000  # job 3 once its lease ends
    async with services.engine.begin() as conn:
        await conn.execute(insert(t.ai_requests), [_job(4, "pending", now - 5)])
    due = await jobs._next_due_ms(services)
    assert due == now - 5 and due <= now_ms()
    claimed = await jobs.claim(services, "me", 10)
    assert [r["request_id"] for r in claimed] == [4]  # due, and claimed


def _delivery(n: int, status: str, next_attempt_ms: int | None, claim_until_ms: int | None = None) -> dict:
    return dict(
        msg_id=f"msg_{n}",
        app_id="app",
        url="http://127.0.0.1:9/hook",
        event="ai_request.succeeded",
        payload="{}",
        status=status,
        attempts=0,
        next_attempt_ms=next_attempt_ms,
        claimed_by="other" if claim_until_ms else None,
        claim_until_ms=claim_until_ms,
        last_error="",
        created_ms=0,
        round_ms=0,
        updated_ms=0,
    )


async def test_a_webhook_delivery_is_due_exactly_when_claim_finds_one(services) -> None:
    now = now_ms()
    async with services.engine.begin() as conn:
        await conn.execute(
            insert(t.webhook_deliveries),
            [
                _delivery(1, "delivered", now - 60_000),
                _delivery(2, "pending", now + 60_000),  # its next attempt is later
                _delivery(3, "pending", now - 1_000, claim_until_ms=now + 60_000),  # another instance holds it
            ],
        )
    assert await webhooks._any_due(services) is False
    assert await webhooks.claim(services, "me", 10) == []
    async with services.engine.begin() as conn:
        await conn.execute(insert(t.webhook_deliveries), [_delivery(4, "pending", now - 1_000, claim_until_ms=now - 1)])
    assert await webhooks._any_due(services) is True  # its lease ran out
    assert [r["msg_id"] for r in await webhooks.claim(services, "me", 10)] == ["msg_4"]
    assert await webhooks._any_due(services) is False  # now leased to this instance
