"""The usage log as the Admin API shows it (seed 001): rows as JSON and CSV, and the
queries behind search, detail and export.

Search semantics:

* ``start_ms`` is inclusive and ``end_ms`` exclusive (``start <= created < end``), so
  consecutive ranges never count a row twice;
* every other filter is an exact match, except ``keyword``: a substring of the request id,
  user, model, token name or content (case-insensitive; on SQLite for ASCII letters only);
* newest first: ``created_ms DESC, id DESC`` (``id`` breaks ties, so pages are stable);
* the total and the facets (distinct channels, models, token names) are computed for all
  the filters, the facet's own field included (filtering by a model yields that model as
  the only ``models`` entry); empty model and token names are left out of the facets.

Totals and facets come from ``usage_log_counts`` (per-hour and per-day row counts per
group, model, channel, token name and code, kept by the writer in the rows' own
transaction) whenever the filters are all among those columns: whole days and hours of
the range are summed from the counts and only the partial hours at its edges are counted
in the log itself. Filters on request id or user count the log directly through their
indexes. A keyword's rows whose model or token name holds it are counted from
usage_log_counts like a filter on those columns; only the rest (request id, user,
content) is counted in the log, found through the keyword index: pg_trgm GIN indexes on
PostgreSQL, the FTS5 trigram table ``usage_logs_fts`` on SQLite (its candidates are
checked with LIKE, so the matches are exactly LIKE's; keywords under three characters
scan the range). On PostgreSQL the model and token names holding the keyword are looked
up first (``KeywordNames``, ``logs_keyword``): the page and the count then test those
columns for equality, and the total and facets are summed in the database
(``facets_query``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    column,
    distinct,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    tuple_,
    union_all,
)

from aigate.clock import iso_ms
from aigate.store import tables as t
from aigate.store.price_fields import PRICE_FIELDS

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

L = t.usage_logs.c
D = t.request_details.c
C = t.usage_log_counts.c

USAGE_FIELDS = (
    "cache_creation_tokens",
    "cached_tokens",
    "image_input_tokens",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "web_search_count",
)
DETAIL_COLUMNS = ("request_body", "request_body_truncated", "response_body", "response_body_truncated")
EXPORT_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "group",
    "channel",
    "mode",
    "model",
    "user",
    "token_name",
    "code",
    "retry_times",
    "ttfb_milliseconds",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "used_amount",
    "content",
)


@dataclass(frozen=True, slots=True)
class LogFilter:
    group: str | None = None  # the log's app_id
    model: str | None = None
    token_name: str | None = None
    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive
    code_type: str = "all"  # all | success (code 200) | error (any other code)
    request_id: str | None = None
    user: str | None = None
    channel: int | None = None
    code: int | None = None
    keyword: str | None = None

    @property
    def countable(self) -> bool:
        """True when usage_log_counts holds every column the filters test."""
        return self.request_id is None and self.user is None and self.keyword is None


# --- rows as the API returns them


def _number(value: Any) -> int | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value is None or value == "":
        return 0
    d = Decimal(str(value))
    return int(d) if d == d.to_integral_value() else float(d)


def _amount(value: Any) -> float:
    return float(value) if value is not None else 0.0


def log_to_json(row: Mapping[str, Any], detail: Mapping[str, Any] | None) -> dict:
    """One usage log row (and its request detail, if stored) as seed 001's log object.

    Times are ISO 8601 UTC with milliseconds (``""`` when unset). A log without a stored
    detail gets an empty one (``id`` 0); a stored detail's ``id`` is its log id, which is
    the detail's key.
    """
    price = row["price"] or {}
    log_id = row["id"]
    return {
        "channel": row["channel"],
        "code": row["code"],
        "content": row["content"] or "",
        "created_at": iso_ms(row["created_ms"]),
        "endpoint": row["endpoint"] or "",
        "group": row["app_id"],
        "id": log_id,
        "ip": row["ip"] or "",
        "metadata": row["metadata"] or {},
        "mode": row["mode"],
        "model": row["model"],
        "price": {name: _number(price.get(name)) for name in PRICE_FIELDS},
        "request_at": iso_ms(row["request_ms"]),
        "request_detail": {
            "id": detail["log_id"] if detail else 0,
            "log_id": log_id,
            "request_body": detail["request_body"] if detail else "",
            "request_body_truncated": bool(detail["request_body_truncated"]) if detail else False,
            "response_body": detail["response_body"] if detail else "",
            "response_body_truncated": bool(detail["response_body_truncated"]) if detail else False,
        },
        "request_id": row["request_id"],
        "retry_at": iso_ms(row["retry_ms"]),
        "retry_times": row["retry_times"],
        "token_id": row["token_id"],
        "token_name": row["token_name"],
        "ttfb_milliseconds": row["ttfb_ms"],
        "usage": {name: row[name] for name in USAGE_FIELDS},
        "used_amount": _amount(row["used_amount"]),
        "user": row["user"],
    }


def joined_to_json(row: Mapping[str, Any]) -> dict:
    """A row of ``page_query``/``detail_query``: the log plus ``detail_*`` columns."""
    detail = None
    if row["detail_log_id"] is not None:
        detail = {"log_id": row["detail_log_id"], **{c: row[f"detail_{c}"] for c in DETAIL_COLUMNS}}
    return log_to_json(row, detail)


def _plain_decimal(value: Any) -> str:
    if value is None:
        return "0"
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def csv_header() -> str:
    return _csv_line(EXPORT_COLUMNS)


def csv_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Export rows (``export_query``) as CSV lines; amounts as exact decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in rows:
        writer.writerow(
            (
                r["id"],
                r["request_id"],
                iso_ms(r["created_ms"]),
                r["app_id"],
                r["channel"],
                r["mode"],
                _inert(r["model"]),
                _inert(r["user"]),
                _inert(r["token_name"]),
                r["code"],
                r["retry_times"],
                r["ttfb_ms"],
                r["input_tokens"],
                r["output_tokens"],
                r["cached_tokens"],
                r["reasoning_tokens"],
                r["total_tokens"],
                _plain_decimal(r["used_amount"]),
                _inert(r["content"]),
            )
        )
    return buf.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (text from end users and upstreams
    lands here): a leading ``= + - @`` gets an apostrophe in front."""
    return "'" + text if text and text.startswith(FORMULA_STARTS) else text


def _csv_line(values: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


# --- filters


FTS = table(t.SQLITE_FTS_TABLE, column("rowid"))
FTS_STATE = table(t.SQLITE_FTS_STATE_TABLE, column("indexed_through"))
FTS_MIN_CHARS = 3  # the trigram tokenizer finds nothing shorter


def like_pattern(keyword: str) -> str:
    """``%keyword%`` with LIKE's wildcards (and the escape character) taken literally."""
    return "%" + keyword.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def fts_query(keyword: str, columns: tuple[str, ...]) -> str:
    """An FTS5 phrase query on some columns: with the trigram tokenizer, the rows with
    the keyword (case folded) in one of them."""
    return "{" + " ".join(columns) + '} : "' + keyword.replace('"', '""') + '"'


def _contains(col: Any, pattern: str, dialect: str) -> ColumnElement[bool]:
    """Case-insensitive LIKE. PostgreSQL: ILIKE with the pattern bound as one value, so
    the pg_trgm indexes serve it; SQLite's LIKE already ignores ASCII case (lower() would
    only add work)."""
    if dialect == "postgresql":
        return col.ilike(pattern, escape="/")
    return col.like(pattern, escape="/")


def _keyword(keyword: str, dialect: str, columns: tuple[str, ...] = t.KEYWORD_COLUMNS) -> ColumnElement[bool]:
    """The keyword in one of ``columns`` (all the searched columns by default)."""
    pattern = like_pattern(keyword)
    match = or_(*(_contains(L[c], pattern, dialect) for c in columns))
    if dialect == "postgresql":
        return match
    if len(keyword) < FTS_MIN_CHARS:
        return match
    # The FTS5 trigram index finds the candidates (a superset: it also folds non-ASCII
    # case) among the rows it holds; the rows logged since the writer last indexed
    # (aigate.store.log_index) are all candidates. LIKE keeps exactly the documented matches.
    fts_match = literal_column(t.SQLITE_FTS_TABLE).op("MATCH")(fts_query(keyword, columns))
    unindexed = L.id > select(FTS_STATE.c.indexed_through).scalar_subquery()
    return and_(or_(L.id.in_(select(FTS.c.rowid).where(fts_match)), unindexed), match)


def _code_conditions(f: LogFilter, code: Any) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if f.code_type == "success":
        conds.append(code == 200)
    elif f.code_type == "error":
        conds.append(code != 200)
    if f.code is not None:
        conds.append(code == f.code)
        if f.code != 200 and f.code_type != "error":
            conds.append(code != 200)  # same meaning; lets the partial error indexes serve it
    return conds


def _dimension_conditions(f: LogFilter, cols) -> list[ColumnElement[bool]]:
    """The filters usage_logs and usage_log_counts share (their columns have the same names)."""
    pairs = ((f.group, cols.app_id), (f.model, cols.model), (f.token_name, cols.token_name), (f.channel, cols.channel))
    conds = [col == value for value, col in pairs if value is not None]
    return conds + _code_conditions(f, cols.code)


def log_conditions(
    f: LogFilter,
    dialect: str,
    *,
    start: int | None = None,
    end: int | None = None,
    use_range: bool = True,
) -> list[ColumnElement[bool]]:
    """WHERE terms on usage_logs; ``start``/``end`` narrow the filter's own range."""
    conds = _dimension_conditions(f, L)
    if f.request_id is not None:
        conds.append(L.request_id == f.request_id)
    if f.user is not None:
        conds.append(L.user == f.user)
    if f.keyword:
        conds.append(_keyword(f.keyword, dialect))
    if use_range:
        lo = _max(f.start_ms, start)
        hi = _min(f.end_ms, end)
        if lo is not None:
            conds.append(L.created_ms >= lo)
        if hi is not None:
            conds.append(L.created_ms < hi)
    return conds


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


# --- queries


def _newest_first() -> tuple:
    return (L.created_ms.desc(), L.id.desc())


def _with_detail(ids_subquery) -> Select:
    """Full log rows for the ids of a subquery, with their request detail columns."""
    detail_cols = [D.log_id.label("detail_log_id"), *(D[c].label(f"detail_{c}") for c in DETAIL_COLUMNS)]
    return (
        select(t.usage_logs, *detail_cols)
        .join(ids_subquery, ids_subquery.c.id == L.id)
        .outerjoin(t.request_details, D.log_id == L.id)
        .order_by(*_newest_first())
    )


def page_query(f: LogFilter, dialect: str, *, offset: int, limit: int) -> Select:
    """One page, newest first. The offset is walked over ids only (an index-only walk on
    the ordering index), then the page's full rows are fetched by id."""
    ids = (
        select(L.id)
        .where(*log_conditions(f, dialect))
        .order_by(*_newest_first())
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    return _with_detail(ids)


def detail_query(log_id: int, group: str | None) -> Select:
    ids = select(L.id).where(L.id == log_id)
    if group is not None:
        ids = ids.where(L.app_id == group)
    return _with_detail(ids.subquery("one"))


def export_query(f: LogFilter, dialect: str, *, after: tuple[int, int] | None, limit: int) -> Select:
    """One keyset chunk of the export: rows strictly after ``(created_ms, id)``."""
    cols = (
        "id",
        "request_id",
        "created_ms",
        "app_id",
        "channel",
        "mode",
        "model",
        "user",
        "token_name",
        "code",
        "retry_times",
        "ttfb_ms",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "total_tokens",
        "used_amount",
        "content",
    )
    q = select(*(L[c] for c in cols)).where(*log_conditions(f, dialect))
    if after is not None:
        created, log_id = after
        # the plain ``<=`` term gives the planner a range on the ordering index
        q = q.where(L.created_ms <= created, or_(L.created_ms < created, L.id < log_id))
    return q.order_by(*_newest_first()).limit(limit)


# --- totals and facets


def split_range(start: int | None, end: int | None, now_ms: int) -> list[tuple[str, int | None, int | None]]:
    """Cover ``[start, end)`` with whole UTC days, whole hours and raw remainders.

    Returns ``(kind, lo, hi)`` pieces; ``kind`` is ``day``, ``hour`` or ``raw`` (counted in
    the log itself); ``None`` bounds are open. An open end counts whole periods up to the
    current hour and the rest (the current hour and anything after it) raw.
    """
    lo = start if start is not None else 0
    limit = end if end is not None else now_ms
    h1 = -(-lo // HOUR_MS) * HOUR_MS
    h2 = limit // HOUR_MS * HOUR_MS
    if h1 >= h2:
        return [("raw", start, end)]
    pieces: list[tuple[str, int | None, int | None]] = []
    d1 = -(-lo // DAY_MS) * DAY_MS
    d2 = limit // DAY_MS * DAY_MS
    hour_spans = [(h1, h2)]
    if d1 < d2:
        pieces.append(("day", d1, d2))
        hour_spans = [(h1, d1), (d2, h2)]
    pieces += [("hour", a, b) for a, b in hour_spans if a < b]
    if start is not None and start < h1:
        pieces.append(("raw", start, h1))
    if end is None or h2 < end:
        pieces.append(("raw", h2, end))
    return pieces


def _count_conditions(f: LogFilter) -> list[ColumnElement[bool]]:
    return _dimension_conditions(f, C)


def _raw_counts(
    f: LogFilter, dialect: str, lo: int | None, hi: int | None, extra: tuple[ColumnElement[bool], ...] = ()
) -> Select:
    return (
        select(L.channel, L.model, L.token_name, func.count().label("n"))
        .where(*log_conditions(f, dialect, start=lo, end=hi), *extra)
        .group_by(L.channel, L.model, L.token_name)
    )


def _rollup_counts(f: LogFilter, grain: int, lo: int, hi: int, extra: tuple[ColumnElement[bool], ...] = ()) -> Select:
    return (
        select(C.channel, C.model, C.token_name, func.sum(C.logs).label("n"))
        .where(C.grain_ms == grain, C.bucket_ms >= lo, C.bucket_ms < hi, *_count_conditions(f), *extra)
        .group_by(C.channel, C.model, C.token_name)
    )


def _counted_pieces(
    f: LogFilter, dialect: str, now_ms: int, extra: Callable[[Any], tuple[ColumnElement[bool], ...]] = lambda cols: ()
) -> list[Select]:
    """Counts of a countable filter over its range: whole days and hours from
    usage_log_counts, the partial hours at the edges from the log; ``extra(cols)`` adds
    terms on the columns both tables share."""
    pieces: list[Select] = []
    for kind, lo, hi in split_range(f.start_ms, f.end_ms, now_ms):
        if kind == "raw":
            pieces.append(_raw_counts(f, dialect, lo, hi, extra(L)))
        else:
            assert lo is not None and hi is not None
            pieces.append(_rollup_counts(f, DAY_MS if kind == "day" else HOUR_MS, lo, hi, extra(C)))
    return pieces


@dataclass(frozen=True, slots=True)
class KeywordNames:
    """The model names and (group, token name) pairs of the log that hold a keyword
    (``logs_keyword.names_query``): testing those columns for these values selects the
    same rows as the keyword's ILIKE, and the indexes serve equality."""

    models: tuple[str, ...]
    tokens: tuple[tuple[str, str], ...]  # (group, token name)

    def __bool__(self) -> bool:
        return bool(self.models or self.tokens)

    def match(self, cols: Any) -> ColumnElement[bool]:
        """Rows whose model or token name is one of these (never true when there are none)."""
        terms = []
        if self.models:
            terms.append(cols.model.in_(self.models))
        if self.tokens:
            terms.append(tuple_(cols.app_id, cols.token_name).in_(self.tokens))
        return or_(false(), *terms)


def _keyword_in_dimensions(keyword: str, dialect: str, cols: Any) -> ColumnElement[bool]:
    pattern = like_pattern(keyword)
    return or_(_contains(cols.model, pattern, dialect), _contains(cols.token_name, pattern, dialect))


def _keyword_counts(f: LogFilter, dialect: str, now_ms: int, names: KeywordNames | None) -> list[Select]:
    """A keyword's matches in two disjoint parts: rows whose model or token name holds it
    (counted like a filter on those columns, from usage_log_counts: a model name as
    keyword matches a large share of the log) and the other rows, whose request id, user
    or content holds it (found in the log through the keyword index). With ``names``
    (PostgreSQL) the first part tests those columns for equality."""
    kw = f.keyword
    assert kw
    plain = replace(f, keyword=None)
    in_text = _keyword(kw, dialect, ("request_id", "user", "content"))
    if names is None:
        in_dims = partial(_keyword_in_dimensions, kw, dialect)
        pieces = _counted_pieces(plain, dialect, now_ms, lambda cols: (in_dims(cols),))
        return [*pieces, _raw_counts(plain, dialect, None, None, (in_text, not_(in_dims(L))))]
    if not names:  # no model or token name holds it
        return [_raw_counts(plain, dialect, None, None, (in_text,))]
    pieces = _counted_pieces(plain, dialect, now_ms, lambda cols: (names.match(cols),))
    return [*pieces, _raw_counts(plain, dialect, None, None, (in_text, not_(names.match(L))))]


def counts_query(f: LogFilter, dialect: str, now_ms: int, names: KeywordNames | None = None) -> Select:
    """``(channel, model, token_name, n)`` groups of the matching rows (possibly several
    rows per group, one per piece of the range): their sum is the total, their keys the
    facets."""
    if f.keyword and f.request_id is None and f.user is None:
        pieces = _keyword_counts(f, dialect, now_ms, names)
    elif not f.countable:
        return _raw_counts(f, dialect, None, None)
    else:
        pieces = _counted_pieces(f, dialect, now_ms)
    if len(pieces) == 1:
        return pieces[0]
    return select(union_all(*pieces).subquery("pieces"))


@dataclass(slots=True)
class Facets:
    total: int
    channels: list[int]
    models: list[str]
    token_names: list[str]


def facets_from_counts(rows: Iterable[Any]) -> Facets:
    total = 0
    channels: set[int] = set()
    models: set[str] = set()
    tokens: set[str] = set()
    for channel, model, token_name, n in rows:
        n = int(n or 0)
        if n <= 0:
            continue
        total += n
        channels.add(channel)
        if model:
            models.add(model)
        if token_name:
            tokens.add(token_name)
    return Facets(total, sorted(channels), sorted(models), sorted(tokens))


def facets_query(f: LogFilter, now_ms: int, names: KeywordNames | None = None) -> Select:
    """PostgreSQL: the total and the facets of ``counts_query`` in one row, summed and
    collected in the database (``total, channels[], models[], token_names[]``, like
    ``facets_from_counts``): a month's counts are thousands of groups, cheaper to sum than
    to move to Python."""
    counts = counts_query(f, "postgresql", now_ms, names).subquery("counts")
    c = counts.c
    rows = select(c.channel, c.model, c.token_name, c.n).where(c.n > 0).subquery("positive")
    r = rows.c
    return select(
        func.coalesce(func.sum(r.n), 0).label("total"),
        func.array_agg(distinct(r.channel)).label("channels"),
        func.array_agg(distinct(r.model)).filter(r.model != "").label("models"),
        func.array_agg(distinct(r.token_name)).filter(r.token_name != "").label("token_names"),
    )


def facets_from_row(row: Mapping[str, Any]) -> Facets:
    """The row of ``facets_query``."""
    return Facets(
        int(row["total"]),
        sorted(row["channels"] or []),
        sorted(row["models"] or []),
        sorted(row["token_names"] or []),
    )
