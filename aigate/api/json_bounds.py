"""What both databases and orjson can round-trip, checked at the API edge so that a value
no table can hold is a 400 naming its field instead of a 500 (or, worse, a committed row
that breaks every later read): integers within int64, finite numbers, text without NUL
characters and lone surrogates."""

from __future__ import annotations

import math
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bounds_error(value: Any, path: str = "") -> str | None:
    """``"<path>: <problem>"`` for the first value out of bounds, None when all fit."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            if not INT64_MIN <= v <= INT64_MAX:
                return f"{where or 'body'}: integer out of range (must fit in 64 bits)"
        elif isinstance(v, float):
            if not math.isfinite(v):
                return f"{where or 'body'}: must be a finite number"
        elif isinstance(v, str):
            problem = _text_problem(v)
            if problem:
                return f"{where or 'body'}: {problem}"
        elif isinstance(v, dict):
            for key, item in v.items():
                name = f"{where}.{key}" if where else str(key)
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"{name}: {problem} in the key"
                stack.append((name, item))
        elif isinstance(v, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(v))
    return None


def _text_problem(s: str) -> str | None:
    if "\x00" in s:
        return "must not contain NUL characters"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None
