"""Background workers started with every instance: log retention and the async-job poller.

A starter is ``async def start(services) -> None``; it may append an async stopper to
``services.stoppers``.
"""
from __future__ import annotations

from aigate import telemetry
from aigate.engine import health, jobs, retention, webhooks

STARTERS: list = [retention.start, jobs.start, health.start, webhooks.start, telemetry.start]
