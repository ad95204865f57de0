"""Background workers started with every instance: log retention and the async-job poller.

A starter is ``async def start(services) -> None``; it may append an async stopper to
``services.stoppers``.
"""
from __future__ import annotations

from aigate.engine import jobs, retention

STARTERS: list = [retention.start, jobs.start]
