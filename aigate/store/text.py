"""User text that PostgreSQL can hold: its ``text`` type refuses NUL characters, which
users may legitimately send (a chat message is theirs to write). Columns of user content
use these types: on PostgreSQL they store NUL as an escape and read it back as NUL, so
the text round-trips faithfully; SQLite keeps NUL as it is and gets the plain type.

The escape uses U+F8FF (private use, never meaningful in text): NUL → U+F8FF "0", and
U+F8FF itself → U+F8FF U+F8FF, so decoding is exact. Text with neither character (nearly
all text) is stored unchanged and costs one scan to check.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.types import TypeDecorator

ESC = "\uf8ff"
_ESCAPED = re.compile(ESC + "(.)", re.DOTALL)


def escape_nul(value: str, max_length: int | None = None) -> str:
    if "\x00" not in value and ESC not in value:
        return value
    out = value.replace(ESC, ESC + ESC).replace("\x00", ESC + "0")
    if max_length is not None and len(out) > max_length:
        out = out[:max_length]
        trailing = len(out) - len(out.rstrip(ESC))
        if trailing % 2:  # do not keep half of an escape
            out = out[:-1]
    return out


def unescape_nul(value: str) -> str:
    if ESC not in value:
        return value
    return _ESCAPED.sub(lambda m: "\x00" if m[1] == "0" else m[1], value)


class _NulSafe(TypeDecorator):
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> Any:
        if isinstance(value, str) and dialect.name == "postgresql":
            return escape_nul(value, getattr(self.impl, "length", None))
        return value

    def process_result_value(self, value: Any, dialect) -> Any:
        if isinstance(value, str) and dialect.name == "postgresql":
            return unescape_nul(value)
        return value


class UserText(_NulSafe):
    """``Text`` for user content."""

    impl = Text
    cache_ok = True


class UserString(_NulSafe):
    """``String(n)`` for user content."""

    impl = String
    cache_ok = True


def bind_user_text(column_type: Any, value: Any, dialect: str) -> Any:
    """What the type would bind, for SQL written by hand (the writer's scripts)."""
    if isinstance(value, str) and dialect == "postgresql" and isinstance(column_type, _NulSafe):
        return escape_nul(value, getattr(column_type.impl, "length", None))
    return value
