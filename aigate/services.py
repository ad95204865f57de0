"""Everything one aigate process holds: built at start-up, torn down at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.config.runtime import ConfigCache, Snapshot
from aigate.config.schema import Config
from aigate.store.writer import BatchWriter

if TYPE_CHECKING:  # the engine's per-process state; the engine imports this module
    from aigate.edge.gate import EdgeGate
    from aigate.engine.ids import Snowflake
    from aigate.engine.jobs import Poller
    from aigate.engine.metering import PreparedAssets, Reservation
    from aigate.engine.records import SeenUsers
    from aigate.engine.relay_limits import Limits
    from aigate.engine.routing import Cooldowns
    from aigate.engine.webhooks import Deliverer
    from aigate.simulator.server import SimulatorHandle
    from aigate.store.checkpoint import WalCheckpointer

log = logging.getLogger("aigate")


@dataclass
class Services:
    config: Config
    engine: AsyncEngine
    cache: ConfigCache
    writer: BatchWriter
    http: aiohttp.ClientSession
    ids: Snowflake
    redis: Any = None
    instance: str = ""
    # per-process state of the engine, created on first use by the module that owns it
    cooldowns: Cooldowns | None = None  # aigate.engine.routing
    seen_users: SeenUsers | None = None  # aigate.engine.records
    prepared_assets: PreparedAssets | None = None  # aigate.engine.metering
    open_holds: dict[str, Reservation] | None = None  # aigate.engine.metering: holds whose leases it renews
    relay_limits: Limits | None = None  # aigate.engine.relay_limits
    job_poller: Poller | None = None  # aigate.engine.jobs
    webhook_deliverer: Deliverer | None = None  # aigate.engine.webhooks
    edge: EdgeGate | None = None  # aigate.edge.gate: the App API's checks before metering
    simulator: SimulatorHandle | None = None  # the offline demo's provider simulator
    log_reader: AsyncEngine | None = None  # aigate.api.admin.logs: the log search's own pool
    checkpointer: WalCheckpointer | None = None  # aigate.store.checkpoint (SQLite files)
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # background workers

    @property
    def snapshot(self) -> Snapshot:
        return self.cache.snapshot

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
