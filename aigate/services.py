"""Everything one aigate process holds: built at start-up, torn down at shutdown."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.config.runtime import ConfigCache, Snapshot
from aigate.config.schema import Config
from aigate.engine.ids import Snowflake
from aigate.store.writer import BatchWriter

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
    extras: dict[str, Any] = field(default_factory=dict)  # background workers, simulator

    @property
    def snapshot(self) -> Snapshot:
        return self.cache.snapshot

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
