"""Named parameters bound by position on SQLite (``aigate.store.sqlite_params``)."""

from __future__ import annotations

import sqlite3

import pytest

from aigate.store.script import SqliteDb
from aigate.store.sqlite_params import positional


def _db() -> SqliteDb:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, "b:c" TEXT, n INTEGER)')
    return SqliteDb(conn, lambda: False)


def test_parameters_become_placeholders_in_order_and_quoted_text_stays():
    sql = "SELECT ':x', \"a:y\", :b -- note: :z\n FROM t WHERE a = :a AND n > :b AND x = 'it''s :w'"
    rewritten, pick = positional(sql)
    assert rewritten == "SELECT ':x', \"a:y\", ? -- note: :z\n FROM t WHERE a = ? AND n > ? AND x = 'it''s :w'"
    assert pick({"a": 1, "b": 2, "z": 3, "w": 4}) == (2, 1, 2)


def test_one_or_no_parameter_still_gives_a_tuple():
    assert positional("SELECT :only")[1]({"only": 5}) == (5,)
    assert positional("SELECT 1")[1]({"unused": 5}) == ()


def test_rows_and_many_store_and_read_what_named_binding_would():
    db = _db()
    insert = 'INSERT INTO t (a, "b:c", n) VALUES (:a, :bc, :n)'
    rows = [{"a": f"x{i}", "bc": "12:30", "n": i, "extra": object()} for i in range(5)]
    db.many(insert, rows)
    db.rows(insert, {"a": "it's", "bc": None, "n": 9})
    assert db.rows('SELECT a, "b:c", n FROM t WHERE n >= :low ORDER BY id', {"low": 3}) == [
        ("x3", "12:30", 3),
        ("x4", "12:30", 4),
        ("it's", None, 9),
    ]
    named = sqlite3.connect(":memory:")
    named.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, "b:c" TEXT, n INTEGER)')
    named.executemany(insert, rows)
    named.execute(insert, {"a": "it's", "bc": None, "n": 9})
    assert named.execute("SELECT * FROM t").fetchall() == db.rows("SELECT * FROM t")


def test_a_missing_value_is_the_error_sqlite3_gives_and_names_the_parameter():
    db = _db()
    with pytest.raises(sqlite3.ProgrammingError, match=":n"):
        db.rows("INSERT INTO t (a, n) VALUES (:a, :n)", {"a": "x"})
    with pytest.raises(sqlite3.ProgrammingError, match=":n"):
        db.many("INSERT INTO t (a, n) VALUES (:a, :n)", [{"a": "x", "n": 1}, {"a": "y"}])
