"""The in-memory configuration every instance serves from.

The hot path reads only this snapshot: no per-request configuration queries. A change
(Admin API, a re-applied file, another instance) bumps ``config_version``; instances
reload on a Redis pub/sub message when Redis is configured, and by polling the version
row (one tiny query) otherwise, so a change is live everywhere within a second.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.config import price_db
from aigate.config.schema import (
    AssetCfg,
    ClientTrustCfg,
    InstructionCfg,
    PlatformCfg,
    Price,
    StrategyCfg,
    WebhookCfg,
)
from aigate.providers.base import Platform, Timeouts
from aigate.store import tables as t
from aigate.store.script import run_background

log = logging.getLogger("aigate.config")

CHANNEL = "aigate:config"


@dataclass(frozen=True, slots=True)
class AppRuntime:
    id: str
    name: str
    user_token_secret: str
    enabled: bool
    strategies: dict[str, StrategyCfg]
    instructions: dict[str, InstructionCfg]
    assets: dict[str, AssetCfg]
    client: ClientTrustCfg = ClientTrustCfg()  # SPEC §10 settings


@dataclass(frozen=True, slots=True)
class RelayToken:
    id: int
    app_id: str
    name: str
    models: frozenset[str]
    rpm: int | None
    tpm: int | None
    spend_limit: Decimal | None
    expires_ms: int | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class ServerKey:
    app_id: str
    name: str
    enabled: bool


def to_platform(cfg: PlatformCfg, number: int) -> Platform:
    return Platform(
        id=cfg.id,
        number=number,
        type=cfg.type,
        base_url=cfg.base_url,
        api_key=(cfg.all_keys() or ("",))[0],
        models=tuple(cfg.models),
        priority=cfg.priority,
        weight=cfg.weight,
        timeouts=Timeouts(cfg.timeout.connect_s, cfg.timeout.first_byte_s, cfg.timeout.total_s),
        model_mapping=dict(cfg.model_mapping),
        options={**cfg.options, "max_concurrency": cfg.max_concurrency},
        enabled=cfg.enabled,
        api_keys=cfg.all_keys(),
    )


@dataclass
class Snapshot:
    version: int = 0
    apps: dict[str, AppRuntime] = field(default_factory=dict)
    server_keys: dict[str, ServerKey] = field(default_factory=dict)  # by key hash
    relay_tokens: dict[str, RelayToken] = field(default_factory=dict)  # by key hash
    platforms: dict[str, Platform] = field(default_factory=dict)
    platform_cfgs: dict[str, PlatformCfg] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    # where each listed model's price comes from: "config", the price database, or "none"
    price_sources: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, list[WebhookCfg]] = field(default_factory=dict)  # by app id

    @cached_property
    def _route_cache(self) -> dict[tuple[str, tuple[str, ...]], list[Platform]]:
        return {}

    def platforms_for(self, model: str, names: list[str] | tuple[str, ...] = ()) -> list[Platform]:
        """Enabled platforms that serve ``model`` (restricted to ``names`` when given),
        highest priority first. Computed once per snapshot."""
        key = (model, tuple(names))
        found = self._route_cache.get(key)
        if found is None:
            pool = [self.platforms[n] for n in names if n in self.platforms] if names else list(self.platforms.values())
            found = sorted((p for p in pool if p.enabled and model in p.models), key=lambda p: -p.priority)
            self._route_cache[key] = found
        return found

    def price(self, model: str) -> Price:
        return self.prices.get(model) or Price()


def _price_from_database(snap: Snapshot, model: str) -> None:
    """The price database's price for ``model``, as served by its first platform."""
    found = price_db.from_platforms(model, snap.platforms.values())
    if found is None:
        snap.price_sources[model] = "none"
    else:
        snap.prices[model], snap.price_sources[model] = found.price, found.source


async def load_snapshot(engine: AsyncEngine) -> Snapshot:
    snap = Snapshot()
    async with engine.connect() as conn:
        snap.version = (await conn.execute(select(t.config_version.c.version))).scalar_one_or_none() or 0
        unpriced = []
        for row in await conn.execute(select(t.models)):
            if row.price is None:
                unpriced.append(row.name)
            else:
                snap.prices[row.name] = Price.model_validate(row.price)
                snap.price_sources[row.name] = "config"
        for row in await conn.execute(select(t.platforms)):
            cfg = PlatformCfg.model_validate({**row.spec, "enabled": row.enabled})
            snap.platform_cfgs[row.id] = cfg
            snap.platforms[row.id] = to_platform(cfg, row.number)
        for name in unpriced:  # looked up once per snapshot, never on the hot path
            _price_from_database(snap, name)
        strategies: dict[str, dict] = {}
        for row in await conn.execute(select(t.strategies)):
            spec = StrategyCfg.model_validate({**row.spec, "enabled": row.enabled})
            strategies.setdefault(row.app_id, {})[row.name] = spec
        instructions: dict[str, dict] = {}
        for row in await conn.execute(select(t.instructions)):
            instructions.setdefault(row.app_id, {})[row.name] = InstructionCfg.model_validate(row.spec)
        assets: dict[str, dict] = {}
        for row in await conn.execute(select(t.asset_policies)):
            assets.setdefault(row.app_id, {})[row.name] = AssetCfg.model_validate(row.spec)
        for row in await conn.execute(select(t.app_webhooks).order_by(t.app_webhooks.c.id)):
            snap.webhooks.setdefault(row.app_id, []).append(WebhookCfg.model_validate(row.spec))
        for row in await conn.execute(select(t.apps)):
            snap.apps[row.id] = AppRuntime(
                id=row.id,
                name=row.name,
                user_token_secret=row.user_token_secret,
                enabled=row.enabled,
                strategies=strategies.get(row.id, {}),
                instructions=instructions.get(row.id, {}),
                assets=assets.get(row.id, {}),
                client=ClientTrustCfg.model_validate(row.client_trust or {}),
            )
        for row in await conn.execute(select(t.server_keys)):
            snap.server_keys[row.key_hash] = ServerKey(row.app_id, row.name, row.enabled)
        for row in await conn.execute(select(t.relay_tokens)):
            snap.relay_tokens[row.key_hash] = RelayToken(
                id=row.id,
                app_id=row.app_id,
                name=row.name,
                models=frozenset(row.models or ()),
                rpm=row.rpm,
                tpm=row.tpm,
                spend_limit=row.spend_limit,
                expires_ms=row.expires_ms,
                enabled=row.enabled,
            )
    return snap


VERSION_SQL = "SELECT version FROM config_version"


def _read_version(db) -> list[tuple]:
    return db.rows(VERSION_SQL)


class ConfigCache:
    """Holds the current snapshot and keeps it fresh."""

    def __init__(self, engine: AsyncEngine, redis=None, poll_interval_s: float = 0.5) -> None:
        self.engine = engine
        self.redis = redis
        self.poll_interval_s = poll_interval_s
        self.snapshot = Snapshot()
        self._tasks: list[asyncio.Task] = []
        self._lock = asyncio.Lock()

    async def reload(self) -> Snapshot:
        async with self._lock:
            self.snapshot = await load_snapshot(self.engine)
            return self.snapshot

    async def changed(self) -> None:
        """Call after writing configuration: reload here and tell the other instances."""
        await self.reload()
        if self.redis is not None:
            await self.redis.publish(CHANNEL, str(self.snapshot.version))

    async def _current_version(self) -> int:
        # one hop of the store's lane, not a pooled connection held through several hops:
        # this runs twice a second on every instance, idle or not
        rows = await run_background(self.engine, _read_version)
        return rows[0][0] if rows and rows[0][0] else 0

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                if await self._current_version() != self.snapshot.version:
                    await self.reload()
            except Exception:  # a database blip must not kill the watcher
                log.warning("config version poll failed", exc_info=True)

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("config pub/sub failed; retrying", exc_info=True)
                await asyncio.sleep(1)

    def start(self) -> None:
        # The poll is the safety net even with Redis (a missed message still converges).
        interval = self.poll_interval_s if self.redis is None else 1.0
        self.poll_interval_s = interval
        self._tasks.append(asyncio.create_task(self._poll(), name="config-poll"))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="config-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
