"""Log search through its indexes, on SQLite and PostgreSQL: keyword results equal a plain
substring scan, every page equals an OFFSET over the reference order, and the log queries
keep being planned for their actual parameters however often a connection runs them."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from aigate.api.admin import dashboard as dash
from aigate.api.admin import logs as admin_logs
from aigate.clock import now_ms
from aigate.engine import retention
from aigate.store import logs_keyword
from aigate.store import logs_query as q
from aigate.store.user_erase import erase_user
from tests.api.test_admin_logs import OTHER, SIM_URL, expected, get, log_row, put_all
from tests.gateway import APP_ID, base_config, start_gateway

HOUR = 3_600_000
DAY = 86_400_000
WORDS = [
    "timeout",
    "Overloaded",
    "rate limit",
    "50% off",
    "snake_case",
    'say "hi"',
    "a/b",
    "context length",
    "BAD gateway",
    "x",
]
USERS = ["alice", "Bob", "carol_x", "DAVE%", "eve"]
MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]
TOKENS = ["", "sdk", "Mobile-App", "ci_bot"]
KEYWORDS = [
    "timeout",
    "TIMEOUT",
    "overload",
    "rate lim",
    "it rea",  # content, across a space
    "50%",
    "%",
    "_",
    "e_c",
    "snake_case",
    '"hi"',
    '"',
    "a/b",
    "/",
    "t l",
    "BOB",
    "carol_",
    "ave%",
    "4o-mi",
    "HAIKU",
    "2.0",
    "mobile-a",
    "ci_",
    "sdk",
    "77",
    "1234",
    "no such thing",
    "x",
    "ox",
]


@pytest.fixture
async def gw(db_url):
    gateway = await start_gateway(base_config(db_url, SIM_URL))
    yield gateway
    await gateway.close()


def generated(now: int, n: int = 400) -> list[dict]:
    rnd = random.Random(18)
    rows = []
    for i in range(n):
        code = rnd.choice([200, 200, 200, 429, 500])
        content = "" if code == 200 else " ".join(rnd.sample(WORDS, 2))
        rows.append(
            log_row(
                now - rnd.randrange(3 * DAY) // 1000 * 1000,  # whole seconds: many ties on created_ms
                request_id=str(rnd.randrange(10**11, 10**12)),
                app_id=APP_ID if i % 4 else OTHER,
                model=rnd.choice(MODELS),
                token_name=rnd.choice(TOKENS),
                user=rnd.choice(USERS),
                channel=rnd.randrange(1, 4),
                code=code,
                content=content,
            )
        )
    return rows


async def test_keyword_and_pages_equal_a_reference_scan(gw):
    now = now_ms()
    rows = generated(now)
    await put_all(gw, rows)

    async def check(rows: list[dict], keywords: list[str]) -> None:
        ranges = [{}, {"start_timestamp": now - DAY - 7 * HOUR, "end_timestamp": now - 2 * HOUR}]
        for kw in keywords:
            for extra in ranges + [{"code_type": "error"}, {"model_name": MODELS[1]}]:
                for path, group in (("/api/logs/search", None), (f"/api/log/{APP_ID}/search", APP_ID)):
                    params = {"keyword": kw, **{k: str(v) for k, v in extra.items()}}
                    status, body = await get(gw, path, {**params, "per_page": 1000})
                    assert status == 200, (params, body)
                    want = expected(rows, params, group)
                    assert [r["request_id"] for r in body["data"]["logs"]] == [r["request_id"] for r in want], params
                    assert body["data"]["total"] == len(want), params
                    assert body["data"]["models"] == sorted({r["model"] for r in want}), params

    await check(rows, KEYWORDS)
    # the reference really tells keywords apart (a check that cannot pass by accident)
    assert len(expected(rows, {"keyword": "timeout"}, None)) not in (0, len(rows))

    # the keyword index follows updates and deletes: an erased user, rows past retention
    alice = [r for r in rows if r["user"] == "alice" and r["app_id"] == APP_ID]
    assert alice
    await erase_user(gw.services.engine, APP_ID, "alice")
    survivors = []
    for r in rows:
        if r in alice:
            r = {**r, "user": "erased:" + "?", "content": ""}
        survivors.append(r)
    # one day's retention: the cutoff (the start of yesterday's UTC day) falls inside the
    # three days of rows at any hour (with two days it leaves ~none just before midnight)
    cutoff = retention.cutoff_ms(1, now)
    assert await retention.purge_once(gw.services.engine, 1, now=now, pause_s=0) > 0
    survivors = [r for r in survivors if r["created_ms"] >= cutoff]
    await check(survivors, ["alice", "ALI", "timeout", "erased", "BOB"])

    # every page of a few filters is the matching slice of the reference order
    for params in (
        {},
        {"model_name": MODELS[0]},
        {"code_type": "success"},
        {"keyword": "o"},
        {"token_name": "sdk", "code_type": "error"},
        {"keyword": "gpt"},
    ):
        want = [r["request_id"] for r in expected(survivors, params, None)]
        assert len(want) > 7
        pages = -(-len(want) // 7)
        for page in range(1, pages + 2):  # and one past the end
            status, body = await get(gw, "/api/logs/search", {**params, "page": page, "per_page": 7})
            assert status == 200
            got = [r["request_id"] for r in body["data"]["logs"]]
            assert got == want[(page - 1) * 7 : page * 7], (params, page)


@pytest.mark.parametrize("max_parts", [16, 0])
async def test_keyword_pages_through_names_equal_a_reference_scan(gw, monkeypatch, max_parts):
    """A keyword naming models and tokens: on PostgreSQL the page merges one ordered part
    per matching name (or, past ``MAX_PARTS``, one per column); every page is the slice of
    the reference order, with and without filters that rule some of those names out."""
    monkeypatch.setattr(logs_keyword, "MAX_PARTS", max_parts)
    now = now_ms()
    rows = generated(now, 300)
    await put_all(gw, rows)
    for params in (
        {"keyword": "o"},  # a model, tokens in both groups, and content
        {"keyword": "I", "code_type": "error"},  # every model, some tokens, content
        {"keyword": "-", "token_name": "Mobile-App"},
        {"keyword": "a", "group": OTHER, "model_name": MODELS[1]},
    ):
        want = [r["request_id"] for r in expected(rows, params, params.get("group"))]
        assert len(want) > 9, params
        for page in (1, 2, -(-len(want) // 9), -(-len(want) // 9) + 1):
            status, body = await get(gw, "/api/logs/search", {**params, "page": page, "per_page": 9})
            assert status == 200, body
            assert [r["request_id"] for r in body["data"]["logs"]] == want[(page - 1) * 9 : page * 9], (params, page)
            assert body["data"]["total"] == len(want), params


def shapes(now: int, dialect: str) -> list:
    """The statements behind the log search, the export and the dashboard."""
    month = {"start_ms": now - 30 * DAY, "end_ms": now}
    filters = [
        q.LogFilter(),
        q.LogFilter(**month),
        q.LogFilter(group=APP_ID, model=MODELS[0]),
        q.LogFilter(model=MODELS[1], token_name="sdk", code_type="error", **month),
        q.LogFilter(group=APP_ID, code_type="success", start_ms=now - DAY),
        q.LogFilter(keyword="timeout", **month),
        q.LogFilter(keyword="ab"),
        q.LogFilter(user="Bob"),
        q.LogFilter(channel=2, code=429),
    ]
    out = []
    for f in filters:
        out += [
            q.page_query(f, dialect, offset=0, limit=20),
            q.page_query(f, dialect, offset=100, limit=100),
            q.counts_query(f, dialect, now),
            q.export_query(f, dialect, after=(now, 10**9), limit=1000),
        ]
        if dialect == "postgresql":
            names = q.KeywordNames((MODELS[0],), ((APP_ID, "sdk"),))
            out.append(q.facets_query(f, now, names if f.keyword else None))
            if f.keyword:
                out += [
                    logs_keyword.names_query(f.keyword),
                    logs_keyword.keyword_page_query(f, names, offset=100, limit=100),
                ]
    hours = dash._pieces(now - 30 * DAY, now, HOUR)[0]
    out += [
        dash.hourly_query(*hours, HOUR, None, dialect),
        dash.hourly_query(*hours, DAY, APP_ID, dialect),
        dash.hourly_query(now - 30 * DAY, now, DAY, None, dialect, grain=DAY),
    ]
    return out


async def _plan_counts(conn) -> list[tuple[int, int]]:
    rows = await conn.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%usage_%' AND statement NOT LIKE '%pg_prepared_statements%'"
        )
    )
    return [tuple(r) for r in rows]


async def test_log_queries_are_planned_for_their_parameters_every_time(gw):
    """PostgreSQL: each shape runs 12 times on one connection of the log-search pool and is
    never given a generic plan (pg_prepared_statements counts them); the same statements
    on the App API's pool do get generic plans, so the check can tell. SQLite: a keyword
    search reads the FTS5 trigram index."""
    now = now_ms()
    await put_all(gw, generated(now, 300))
    engine = gw.services.engine
    dialect = engine.dialect.name
    reader = admin_logs.log_reader(gw.services)
    if dialect == "sqlite":
        assert reader is engine
        sql = str(
            q.page_query(q.LogFilter(keyword="timeout"), dialect, offset=0, limit=20).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        async with engine.connect() as conn:
            plan = " ".join(r[3] for r in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "usage_logs_fts VIRTUAL TABLE" in plan, plan
        return

    assert reader is not engine
    statements = shapes(now, dialect)
    async with reader.connect() as conn:
        for stmt in statements:
            for _ in range(12):
                (await conn.execute(stmt)).all()
        counts = await _plan_counts(conn)
    # every execution was planned for its parameters (shapes may share their SQL text)
    assert sum(custom for _, custom in counts) == 12 * len(statements), counts
    assert all(generic == 0 for generic, _ in counts), counts

    async with engine.connect() as conn:  # the control: the default plan cache
        for stmt in statements:
            for _ in range(12):
                (await conn.execute(stmt)).all()
        counts = await _plan_counts(conn)
    assert any(generic > 0 for generic, _ in counts), counts
