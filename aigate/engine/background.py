"""Background workers started with every instance: log retention, the async-job poller
and the leases of credit holds.

A starter is ``async def start(services) -> None``; it may append an async stopper to
``services.stoppers``.
"""

from __future__ import annotations

from aigate import telemetry
from aigate.engine import health, hold_leases, jobs, retention, webhooks

STARTERS: list = [retention.start, jobs.start, hold_leases.start, health.start, webhooks.start, telemetry.start]
