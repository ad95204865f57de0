"""Admin API: usage log search, detail and CSV export (seed 001).

Query parameters: ``page`` (1-1,000,000, default 1), ``per_page`` (1-1000, default 20),
``model_name``, ``token_name``, ``start_timestamp`` (inclusive) and ``end_timestamp``
(exclusive) in ms, ``code_type`` (all | success = code 200 | error = any other code),
``request_id``, ``user``, ``channel``, ``code``, ``keyword``, and on the global routes
``group``. An empty value means "no filter"; a malformed or out-of-range one is a 400
naming the parameter. An unknown group is an empty result, not a 404.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import AfterValidator, BeforeValidator, Field
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.api.admin.access import may_see_bodies
from aigate.api.admin.common import envelope
from aigate.clock import now_ms
from aigate.store.db import create_reader_engine
from aigate.store.logs_keyword import keyword_names, keyword_page_query, names_query
from aigate.store.logs_query import (
    KeywordNames,
    LogFilter,
    counts_query,
    csv_header,
    csv_rows,
    detail_query,
    export_query,
    facets_from_counts,
    facets_from_row,
    facets_query,
    joined_to_json,
    page_query,
)
from aigate.store.sinks import current_rollups

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 1000
EXPORT_CHUNK = 1000  # rows per keyset query: memory stays flat whatever the export's size

router = APIRouter(tags=["logs"])


def json_response(data: Any) -> Response:
    """The success envelope serialized by orjson directly: large pages and dashboards skip
    FastAPI's generic (and slow) encoding pass. ``data`` must hold only JSON types."""
    return Response(orjson.dumps(envelope(data)), media_type="application/json")


def blank_to_none(value: Any) -> Any:
    """UIs send empty fields as ``name=``: treat them as absent, not as bad values."""
    return None if isinstance(value, str) and value.strip() == "" else value


def no_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL, so no stored value contains one: a 400, not a 500."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


GroupPath = Annotated[str, Path(description="the group (app id)"), AfterValidator(no_nul)]


INT32_MAX = 2**31 - 1  # channel and code are 32-bit columns
# Optional query parameters, their bounds applying only when given. Each is spelled out (not
# built by a helper function) so that type checkers see it as ``int | None`` or ``str | None``.
_Blank = BeforeValidator(blank_to_none)
Page = Annotated[Annotated[int, Field(ge=1, le=1_000_000)] | None, _Blank, Query(description="page number, from 1")]
PerPage = Annotated[
    Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] | None, _Blank, Query(description="rows per page, default 20")
]
Millis = Annotated[Annotated[int, Field(ge=0, le=2**62)] | None, _Blank, Query(description="Unix time in milliseconds")]
Int32 = Annotated[Annotated[int, Field(ge=0, le=INT32_MAX)] | None, _Blank, Query()]
Str24 = Annotated[Annotated[str, Field(max_length=24), AfterValidator(no_nul)] | None, _Blank, Query()]
Str64 = Annotated[Annotated[str, Field(max_length=64), AfterValidator(no_nul)] | None, _Blank, Query()]
Str100 = Annotated[Annotated[str, Field(max_length=100), AfterValidator(no_nul)] | None, _Blank, Query()]
Str200 = Annotated[Annotated[str, Field(max_length=200), AfterValidator(no_nul)] | None, _Blank, Query()]
Keyword = Annotated[
    Annotated[str, Field(max_length=200), AfterValidator(no_nul)] | None,
    _Blank,
    Query(description="substring of request id, user, model, token name or content"),
]


class LogParams:
    """The search parameters every log route shares (FastAPI dependency)."""

    def __init__(
        self,
        page: Page = None,
        per_page: PerPage = None,
        model_name: Str200 = None,
        token_name: Str100 = None,
        start_timestamp: Millis = None,
        end_timestamp: Millis = None,
        code_type: Annotated[Literal["all", "success", "error"] | None, BeforeValidator(blank_to_none), Query()] = None,
        request_id: Str24 = None,
        user: Str64 = None,
        channel: Int32 = None,
        code: Int32 = None,
        keyword: Keyword = None,
    ) -> None:
        if start_timestamp is not None and end_timestamp is not None and end_timestamp <= start_timestamp:
            raise HTTPException(400, "end_timestamp: must be greater than start_timestamp")
        self.page = page or 1
        self.per_page = per_page or DEFAULT_PER_PAGE
        self.model_name = model_name
        self.token_name = token_name
        self.start_timestamp = start_timestamp
        self.end_timestamp = end_timestamp
        self.code_type = code_type or "all"
        self.request_id = request_id
        self.user = user
        self.channel = channel
        self.code = code
        self.keyword = keyword

    def filter(self, group: str | None) -> LogFilter:
        return LogFilter(
            group=group,
            model=self.model_name,
            token_name=self.token_name,
            start_ms=self.start_timestamp,
            end_ms=self.end_timestamp,
            code_type=self.code_type,
            request_id=self.request_id,
            user=self.user,
            channel=self.channel,
            code=self.code,
            keyword=self.keyword,
        )


Params = Annotated[LogParams, Depends()]
GroupQuery = Annotated[
    Annotated[str, Field(max_length=64), AfterValidator(no_nul)] | None,
    _Blank,
    Query(description="only this app's logs"),
]


def log_reader(services: Any) -> AsyncEngine:
    """The engine the log search, export and dashboard read with: on PostgreSQL a small
    pool of its own whose connections plan every statement with its actual parameters
    (``db.READER_SETTINGS``), so the App API's pool keeps its plan cache; on SQLite the
    one engine."""
    if services.log_reader is None:
        services.log_reader = create_reader_engine(services.config.database.url) or services.engine
        if services.log_reader is not services.engine:
            services.stoppers.append(services.log_reader.dispose)
    return services.log_reader


def _engine(request: Request) -> AsyncEngine:
    return log_reader(request.app.state.services)


async def _fetch(engine: AsyncEngine, stmt: Select) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).mappings().all())


async def _search(engine: AsyncEngine, params: LogParams, f: LogFilter, *, token_names: bool) -> dict:
    dialect = engine.dialect.name
    offset, limit = (params.page - 1) * params.per_page, params.per_page
    if dialect == "sqlite":  # one connection: the queries would only queue behind each other
        await current_rollups(engine)  # the counts are a rollup
        rows = await _fetch(engine, page_query(f, dialect, offset=offset, limit=limit))
        count_rows = await _fetch(engine, counts_query(f, dialect, now_ms()))
        facets = facets_from_counts((r["channel"], r["model"], r["token_name"], r["n"]) for r in count_rows)
    else:
        names = await _keyword_names(engine, f)
        rows, facet_rows = await asyncio.gather(
            _pg_page(engine, f, names, offset, limit), _fetch(engine, facets_query(f, now_ms(), names))
        )
        facets = facets_from_row(facet_rows[0])
    data: dict[str, Any] = {
        "channels": facets.channels,
        "logs": [joined_to_json(r) for r in rows],
        "models": facets.models,
        "total": facets.total,
    }
    if token_names:
        data["token_names"] = facets.token_names
    return data


async def _keyword_names(engine: AsyncEngine, f: LogFilter) -> KeywordNames | None:
    """PostgreSQL: the model and token names holding the keyword, found first, so the
    page and the total test those columns with equality (``logs_keyword``)."""
    if not f.keyword or f.request_id is not None or f.user is not None:
        return None  # request id and user filters are a handful of rows: ILIKE is fine
    async with engine.connect() as conn:
        return keyword_names([tuple(r) for r in await conn.execute(names_query(f.keyword))], f)


async def _pg_page(engine: AsyncEngine, f: LogFilter, names: KeywordNames | None, offset: int, limit: int) -> list:
    if names is None:
        return await _fetch(engine, page_query(f, "postgresql", offset=offset, limit=limit))
    return await _fetch(engine, keyword_page_query(f, names, offset=offset, limit=limit))


@router.get("/logs/search", response_model=None)
async def search_all_logs(request: Request, params: Params, group: GroupQuery = None) -> Response:
    """Every group's logs, newest first, with the total and the channel and model facets."""
    data = await _search(_engine(request), params, params.filter(group), token_names=False)
    return json_response(data if may_see_bodies(request) else without_bodies(data))


@router.get("/log/{group}/search", response_model=None)
async def search_group_logs(request: Request, group: GroupPath, params: Params) -> Response:
    """One group's logs, newest first, with the channel, model and token name facets."""
    data = await _search(_engine(request), params, params.filter(group), token_names=True)
    return json_response(data if may_see_bodies(request) else without_bodies(data))


def without_bodies(data: dict) -> dict:
    """A viewer's search result: no request or response bodies."""
    for row in data["logs"]:
        row["request_detail"] = {**row["request_detail"], "request_body": "", "response_body": ""}
    return data


async def _detail(engine: AsyncEngine, log_id: int, group: str | None) -> Response:
    rows = await _fetch(engine, detail_query(log_id, group))
    if not rows:
        raise HTTPException(404, f"log {log_id} not found")
    return json_response(joined_to_json(rows[0]))


LogId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the log's id")]


@router.get("/logs/detail/{id}", response_model=None)
async def log_detail(request: Request, id: LogId) -> Response:
    return await _detail(_engine(request), id, None)


@router.get("/log/{group}/detail/{id}", response_model=None)
async def group_log_detail(request: Request, group: GroupPath, id: LogId) -> Response:
    """404 as well when the log belongs to another group."""
    return await _detail(_engine(request), id, group)


async def _csv_chunks(engine: AsyncEngine, f: LogFilter) -> AsyncIterator[str]:
    yield csv_header()
    after: tuple[int, int] | None = None
    while True:
        # a connection per chunk: a slow reader never holds one (SQLite has only one)
        rows = await _fetch(engine, export_query(f, engine.dialect.name, after=after, limit=EXPORT_CHUNK))
        if rows:
            yield csv_rows(rows)
        if len(rows) < EXPORT_CHUNK:
            return
        after = (rows[-1]["created_ms"], rows[-1]["id"])


def _csv_response(engine: AsyncEngine, f: LogFilter, name: str) -> StreamingResponse:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    filename = f"aigate-logs-{safe}-{now_ms()}.csv"
    return StreamingResponse(
        _csv_chunks(engine, f),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/logs/export", response_class=StreamingResponse)
async def export_all_logs(request: Request, params: Params, group: GroupQuery = None):
    """CSV of every matching row (``page``/``per_page`` are ignored), newest first."""
    return _csv_response(_engine(request), params.filter(group), group or "all")


@router.get("/log/{group}/export", response_class=StreamingResponse)
async def export_group_logs(request: Request, group: GroupPath, params: Params):
    return _csv_response(_engine(request), params.filter(group), group)
