"""Reading the upstream's Retry-After (seconds, HTTP dates, OpenAI's retry-after-ms)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from multidict import CIMultiDict

from aigate.providers.http import MAX_RETRY_AFTER_S, retry_after_s


def test_seconds_dates_and_milliseconds():
    assert retry_after_s(CIMultiDict({"Retry-After": "2"})) == 2.0
    assert retry_after_s(CIMultiDict({"retry-after": "0.5"})) == 0.5
    assert retry_after_s(CIMultiDict({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after_s(CIMultiDict({"Retry-After": when})) <= 30


def test_absent_unreadable_negative_and_huge_values():
    assert retry_after_s(None) is None
    assert retry_after_s(CIMultiDict()) is None
    assert retry_after_s(CIMultiDict({"Retry-After": "soon"})) is None
    assert retry_after_s(CIMultiDict({"Retry-After": "-4"})) == 0.0
    assert retry_after_s(CIMultiDict({"Retry-After": "99999999"})) == MAX_RETRY_AFTER_S
