"""Named parameters bound by position on SQLite.

Transaction scripts write ``:name`` parameters (one SQL text for SQLite and PostgreSQL).
Given a dict, Python's sqlite3 asks SQLite for each parameter's name, builds a new string
from it and hashes that to look the value up, for every value of every row of an
``executemany`` (an insert of 40-column rows took 2.6 times as long with dicts as with
tuples; a writer flush binds 29 values per usage-log row and 20 per AI request row).
``positional`` rewrites a statement once into ``?`` placeholders and an ``itemgetter``
that picks the values in order, with the names' hashes cached.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import Any

# a quoted string or identifier, or a comment, is copied as it is; ``:name`` outside them
# is a parameter (``::`` is PostgreSQL's cast, never in SQL meant for SQLite)
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|(?<!:):([A-Za-z_]\w*)""")

Pick = Callable[[Mapping[str, Any]], tuple]


def _no_values(_params: Mapping[str, Any]) -> tuple:
    return ()


@lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, Pick]:
    """The statement with ``?`` for each ``:name``, and what turns a dict into its values."""
    names: list[str] = []

    def swap(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)
        names.append(match.group(1))
        return "?"

    rewritten = _TOKENS.sub(swap, sql)
    if not names:
        return rewritten, _no_values
    if len(names) == 1:
        one = itemgetter(names[0])
        return rewritten, lambda params: (one(params),)
    return rewritten, itemgetter(*names)


def no_value_for(missing: KeyError) -> sqlite3.ProgrammingError:
    """What sqlite3 raises for a dict without a parameter's value."""
    return sqlite3.ProgrammingError(f"You did not supply a value for binding parameter :{missing.args[0]}.")
