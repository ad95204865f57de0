"""Query-string parsing with errors that name the parameter."""

from __future__ import annotations

from typing import Literal, overload

from starlette.datastructures import QueryParams

from aigate.api.json_bounds import INT64_MAX, INT64_MIN
from aigate.errors import invalid


@overload
def int_param(
    query: QueryParams, name: str, default: int, lo: int | None = None, hi: int | None = None, required: bool = False
) -> int: ...
@overload
def int_param(
    query: QueryParams,
    name: str,
    default: None,
    lo: int | None = None,
    hi: int | None = None,
    *,
    required: Literal[True],
) -> int: ...
@overload
def int_param(
    query: QueryParams,
    name: str,
    default: int | None,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = False,
) -> int | None: ...
def int_param(
    query: QueryParams,
    name: str,
    default: int | None,
    lo: int | None = None,
    hi: int | None = None,
    required: bool = False,
) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid(f"{name}: required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name}: must be an integer") from None
    # every integer ends up in a 64-bit column or parameter: bound it even when the
    # caller sets no bound of its own
    lo = INT64_MIN if lo is None else lo
    hi = INT64_MAX if hi is None else hi
    if not lo <= value <= hi:
        raise invalid(f"{name}: must be between {lo} and {hi}")
    return value


def id_list(body: dict, name: str, max_items: int = 1000) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{name}: must be a list of strings")
    if not value:
        raise invalid(f"{name}: must not be empty")
    if len(value) > max_items:
        raise invalid(f"{name}: at most {max_items} ids per call")
    return value
