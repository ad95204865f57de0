"""A keyword's page of the log on PostgreSQL, through the ordering indexes.

A keyword matches a substring of the request id, user, model, token name or content. Model
and token names are few: the ones holding the keyword are found first among the log's
distinct values (a loose index scan: one index probe per distinct value), and the
keyword's test on those columns becomes an equality test on exactly those values, which
gives the same rows. The page is then the newest of a few disjoint parts:

* one part per matching model, and one per matching (group, token name) pair: ordered
  index-only walks of ``ix_usage_logs_model_created`` / ``ix_usage_logs_app_token_created``
  that stop after ``offset + limit`` entries;
* the rows whose request id, user or content holds the keyword (and are in no part
  above), found with the pg_trgm indexes.

PostgreSQL merges the parts in order (Merge Append), so a deep page of a keyword that
names a model reads about ``offset + limit`` small index entries instead of fetching and
sorting every matching row. The total tests the same names (``logs_query.counts_query``
with ``names``). A model or token name first logged after the names were looked up is
left out of that one search, page and total alike.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import ColumnElement, Select, TextClause, and_, not_, or_, select, text, tuple_, union_all

from aigate.store.logs_query import (
    KeywordNames,
    L,
    LogFilter,
    _contains,
    _newest_first,
    _with_detail,
    like_pattern,
    log_conditions,
)

MAX_PARTS = 16  # more matching names than this: one part per column, sorted instead of merged

# The distinct models and (group, token name) pairs, one index probe each (PostgreSQL has
# no skip scan), then the keyword's test on those few values.
_NAMES_SQL = """
WITH RECURSIVE models(model) AS (
    (SELECT model FROM usage_logs ORDER BY model LIMIT 1)
    UNION ALL
    SELECT (SELECT l.model FROM usage_logs l WHERE l.model > m.model ORDER BY l.model LIMIT 1)
    FROM models m WHERE m.model IS NOT NULL
), tokens(app_id, token_name) AS (
    (SELECT app_id, token_name FROM usage_logs ORDER BY app_id, token_name LIMIT 1)
    UNION ALL
    SELECT n.app_id, n.token_name FROM tokens p CROSS JOIN LATERAL (
        SELECT l.app_id, l.token_name FROM usage_logs l
        WHERE (l.app_id, l.token_name) > (p.app_id, p.token_name)
        ORDER BY l.app_id, l.token_name LIMIT 1
    ) n
)
SELECT '' AS app_id, model AS name FROM models WHERE model ILIKE :pattern ESCAPE '/'
UNION ALL
SELECT app_id, token_name FROM tokens WHERE token_name ILIKE :pattern ESCAPE '/'
"""


def names_query(keyword: str) -> TextClause:
    """``(app_id, name)`` rows: models (app_id ``''``) and token names holding the keyword."""
    return text(_NAMES_SQL).bindparams(pattern=like_pattern(keyword))


def keyword_names(rows: list, f: LogFilter) -> KeywordNames:
    """The rows of ``names_query``, less those the filter's own model, token or group rule out."""
    models = tuple(sorted(name for app, name in rows if app == "" and f.model in (None, name)))
    tokens = tuple(
        sorted(
            (app, name) for app, name in rows if app != "" and f.group in (None, app) and f.token_name in (None, name)
        )
    )
    return KeywordNames(models, tokens)


def _parts(names: KeywordNames) -> list[ColumnElement[bool]]:
    """Disjoint conditions whose union is "model or token name holds the keyword"."""
    models = [L.model == m for m in names.models]
    tokens = [and_(L.app_id == a, L.token_name == n) for a, n in names.tokens]
    if len(models) + len(tokens) > MAX_PARTS:
        models = [L.model.in_(names.models)] if names.models else []
        tokens = [tuple_(L.app_id, L.token_name).in_(names.tokens)] if names.tokens else []
    if models and tokens:  # a row of a matching model is in the model parts only
        tokens = [and_(t, L.model.not_in(names.models)) for t in tokens]
    return models + tokens


def keyword_page_query(f: LogFilter, names: KeywordNames, *, offset: int, limit: int) -> Select:
    """``logs_query.page_query`` for a keyword search on PostgreSQL (same rows, same order)."""
    assert f.keyword
    plain = log_conditions(replace(f, keyword=None), "postgresql")
    pattern = like_pattern(f.keyword)
    in_text = or_(*(_contains(L[c], pattern, "postgresql") for c in ("request_id", "user", "content")))
    excluded = [not_(names.match(L))] if names else []
    enough = offset + limit
    branches = [
        select(L.created_ms, L.id).where(*plain, cond).order_by(*_newest_first()).limit(enough)
        for cond in [*_parts(names), and_(in_text, *excluded)]
    ]
    parts = union_all(*branches).subquery("parts") if len(branches) > 1 else branches[0].subquery("parts")
    ids = (
        select(parts.c.id)
        .order_by(parts.c.created_ms.desc(), parts.c.id.desc())
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    return _with_detail(ids)
