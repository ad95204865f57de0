"""Fault injection on every flow of the call lifecycle (aigate.engine.calls): whatever
breaks after the reservation — a database error or outage, an encoding error, a bug, a
cancellation — the call is released (or, for a client gone mid-stream, billed) exactly
once, and leaves exactly one usage-log row and one AI request record with the right code."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy.exc
from sqlalchemy import select

from aigate.engine import calls, chat, jobs, relay
from aigate.store import tables as t
from tests.api.test_ai_requests import ai_config
from tests.gateway import RELAY_KEY, start_gateway

INITIAL = 50

FAULTS = {
    "database_error": (lambda: sqlalchemy.exc.DataError("INSERT", {}, ValueError("invalid input")), 500),
    "database_outage": (lambda: sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()), 503),
    "encoding_error": (lambda: UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), 500),
    "bug": (lambda: RuntimeError("an unexpected bug"), 500),
    "cancelled": (lambda: asyncio.CancelledError(), 499),
}
ERROR_TYPES = {500: "internal_error", 503: "service_unavailable"}


def raising(make, after: int = 0):
    """A replacement that raises ``make()`` (after ``after`` calls that pass through)."""
    seen = {"n": 0}

    def check():
        seen["n"] += 1
        if seen["n"] > after:
            raise make()

    return check


# where to break each flow, after its reservation: (flow, point) -> patch(monkeypatch, make)
def _route(mp, make):
    check = raising(make)

    async def route(self, cands, attempt):
        check()

    mp.setattr(calls.Call, "route", route)


def _open(mp, make):
    check = raising(make)

    async def open_stream(self, cands, start):
        check()

    mp.setattr(calls.Call, "open_stream", open_stream)


def _save(mp, make):
    check = raising(make)

    async def save(*args):
        check()

    mp.setattr(chat, "_save_exchange", save)


def _frame(cls):
    def patch(mp, make):
        check = raising(make, after=1)  # the first delta reaches the client
        original = cls.frame

        def frame(self, event, state):
            if event.delta:
                check()
            return original(self, event, state)

        mp.setattr(cls, "frame", frame)

    return patch


def _enqueue(mp, make):
    check = raising(make)

    async def enqueue(*args):
        check()

    mp.setattr(jobs, "enqueue", enqueue)


POINTS = {
    ("chat", "route"): _route,
    ("chat", "save"): _save,
    ("chat_stream", "open"): _open,
    ("chat_stream", "mid"): _frame(chat.ChatStream),
    ("chat_stream", "save"): _save,
    ("instruction", "route"): _route,
    ("ai_request", "route"): _route,
    ("ai_request_job", "enqueue"): _enqueue,
    ("relay", "route"): _route,
    ("relay_stream", "mid"): _frame(relay.RelayStream),
}
COST = {"chat": 1, "chat_stream": 1, "instruction": 2, "ai_request": 5, "ai_request_job": 10}


@pytest.fixture
async def gw(db_url, simulator):
    doc = ai_config(db_url, simulator.url)
    doc["apps"][0]["instructions"] = [
        {
            "name": "ask",
            "model": "gpt-4o-mini",
            "max_token": 100,
            "temperature": 0,
            "cost": {"asset": "ai_credit", "per_request": 2},
            "messages": [{"role": "user", "content": "Tell me about {{ .topic }}."}],
        }
    ]
    gateway = await start_gateway(doc)
    try:
        yield gateway
    finally:
        await gateway.close()


async def _send(gw, flow: str, user: str) -> tuple[int, bytes]:
    h = gw.user_headers(user)
    chat_body = {
        "strategy": "free-normal",
        "parameters": {"example_string": "a tester"},
        "messages": [{"role": "user", "content": "tell me a long story"}],
    }
    relay_body = {
        "model": "gpt-4o-mini",
        "user": user,
        "messages": [{"role": "user", "content": "tell me a long story"}],
    }
    requests = {
        "chat": ("/bp/ai/chat", chat_body, h),
        "chat_stream": ("/bp/ai/chat/stream", chat_body, h),
        "instruction": ("/bp/ai/chat/instruction", {"name": "ask", "parameters": {"topic": "tides"}}, h),
        "ai_request": ("/bp/ai/ai_request", {"strategy": "dell-3", "parameters": {"prompt": "a fox", "n": 1}}, h),
        "ai_request_job": ("/bp/ai/ai_request", {"strategy": "video", "parameters": {"prompt": "w", "seconds": 1}}, h),
        "relay": ("/v1/chat/completions", relay_body, {"Authorization": f"Bearer {RELAY_KEY}"}),
        "relay_stream": (
            "/v1/chat/completions",
            {**relay_body, "stream": True},
            {"Authorization": f"Bearer {RELAY_KEY}"},
        ),
    }
    path, body, headers = requests[flow]
    try:
        async with gw.session.post(gw.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.read()
    except Exception:  # a cancelled request may end without a complete answer
        return 0, b""


async def _rows(gw, user: str):
    async with gw.services.engine.connect() as conn:
        logs = (await conn.execute(select(t.usage_logs.c.code).where(t.usage_logs.c.user == user))).all()
        records = (await conn.execute(select(t.ai_requests.c.status).where(t.ai_requests.c.user_id == user))).all()
        ledger = (
            await conn.execute(
                select(t.asset_ledger.c.reason, t.asset_ledger.c.delta_micros)
                .where(t.asset_ledger.c.user_id == user)
                .order_by(t.asset_ledger.c.id)
            )
        ).all()
        balance = (
            await conn.execute(select(t.user_assets.c.quantity_micros).where(t.user_assets.c.user_id == user))
        ).scalar()
    micros = 1_000_000  # quantities are stored in millionths of a credit
    return (
        [r[0] for r in logs],
        [r[0] for r in records],
        [(r[0], r[1] // micros) for r in ledger],
        None if balance is None else balance // micros,
    )


async def _settled_rows(gw, user: str, want_records: bool):
    """The rows once the (possibly detached) ending has run."""
    for _ in range(100):
        await gw.flush()
        logs, records, ledger, balance = await _rows(gw, user)
        if logs and (records or not want_records):
            await asyncio.sleep(0.05)  # nothing more may arrive: a second row would be a bug
            await gw.flush()
            return await _rows(gw, user)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no usage-log row for {user}")


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("flow,point", list(POINTS))
async def test_a_fault_after_the_reservation_ends_the_call_exactly_once(gw, monkeypatch, flow, point, fault):
    make, code = FAULTS[fault]
    POINTS[(flow, point)](monkeypatch, make)
    user = f"{flow}-{point}-{fault}"[:64]
    status, body = await _send(gw, flow, user)

    is_relay = flow.startswith("relay")
    logs, records, ledger, balance = await _settled_rows(gw, user, want_records=not is_relay)
    assert logs == [code]  # one usage-log row, with the code of what happened
    mid_stream = point == "mid"
    if code != 499:
        if mid_stream or point == "save" and flow == "chat_stream":  # after the first byte
            assert status == 200
            assert (
                (b"ai_chat_error" in body and ERROR_TYPES[code].encode() in body)
                if not is_relay
                else b'"error"' in body
            )
        else:
            assert status == code
    if is_relay:
        return
    cost = COST[flow]
    if fault == "cancelled" and mid_stream:  # the client left mid-stream: what it got is billed
        assert records == ["succeeded"]  # a partial answer, billed (the log row says 499)
        assert ledger == [("initial", INITIAL), ("reserve", -cost)]
        assert balance == INITIAL - cost
    else:  # released exactly once
        assert records == ["failed"]
        assert ledger == [("initial", INITIAL), ("reserve", -cost), ("refund", cost)]
        assert balance == INITIAL
