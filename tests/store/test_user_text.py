"""NUL in user text is kept, on PostgreSQL too (whose text type refuses it): the writer's
scripts and SQLAlchemy reads round-trip it exactly (aigate.store.text)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from aigate.store import tables as t
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.script import run_script
from aigate.store.sinks import write_ai_requests, write_chat_exchanges, write_usage_logs
from aigate.store.text import ESC, escape_nul, unescape_nul
from tests.store.test_writer import log_row

TRICKY = ["a\x00b", "\x00", f"x{ESC}0y", f"{ESC}", f"\x00{ESC}\x00{ESC}{ESC}0", "plain text", "日本\x00語"]


@pytest.mark.parametrize("value", TRICKY)
def test_escape_round_trips_and_leaves_plain_text_alone(value):
    escaped = escape_nul(value)
    assert "\x00" not in escaped and unescape_nul(escaped) == value
    assert escape_nul("plain text") == "plain text"


@pytest.mark.parametrize("length", [98, 99, 100])
def test_escape_cut_to_a_length_never_keeps_half_an_escape(length):
    original = "ab\x00" * 50
    escaped = escape_nul(original, max_length=length)
    assert length - 1 <= len(escaped) <= length
    back = unescape_nul(escaped)
    assert ESC not in back and original.startswith(back)


@pytest.fixture
async def engine(db_url):
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def test_nul_in_chat_logs_and_records_is_stored_faithfully(engine):
    text = f"hello\x00world {ESC} end"
    await run_script(
        engine,
        write_chat_exchanges,
        [
            dict(
                chat_id="C" * 18,
                app_id="APP",
                user_id="u1",
                strategy="s",
                title=text,
                messages=[{"role": "user", "content": text}],
                created_ms=1,
            )
        ],
    )
    await run_script(engine, write_usage_logs, [log_row(1, content=text, request_body=text, response_body=text)])
    await run_script(
        engine,
        write_ai_requests,
        [
            dict(
                request_id=1,
                app_id="APP",
                user_id="u1",
                from_appserver=False,
                module="chat",
                strategy="s",
                status="failed",
                response=text,
                error=text,
                created_ms=1,
                updated_ms=1,
            )
        ],
    )
    async with engine.connect() as conn:
        assert (await conn.execute(select(t.chats.c.title))).scalar_one() == text
        assert (await conn.execute(select(t.chat_exchanges.c.messages))).scalar_one()[0]["content"] == text
        assert (await conn.execute(select(t.usage_logs.c.content))).scalar_one() == text
        detail = (await conn.execute(select(t.request_details))).one()
        assert detail.request_body == text and detail.response_body == text
        record = (await conn.execute(select(t.ai_requests.c.response, t.ai_requests.c.error))).one()
        assert record.response == text and record.error == text
