"""Write a validated configuration into the database (upsert: the file wins for what it declares)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigate.auth.keys import hash_key, key_prefix
from aigate.clock import ms_from_datetime, now_ms
from aigate.config.schema import AppCfg, Config
from aigate.store import tables as t
from aigate.store.upsert import insert_ignore, upsert


def dump(model) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def bump_version(conn: AsyncConnection) -> int:
    """Mark configuration as changed; every instance reloads when it sees a new version."""
    ts = now_ms()
    await conn.execute(insert_ignore(conn, t.config_version, ["id"]).values(id=1, version=0, updated_ms=ts))
    await conn.execute(
        update(t.config_version)
        .where(t.config_version.c.id == 1)
        .values(version=t.config_version.c.version + 1, updated_ms=ts)
    )
    return (await conn.execute(select(t.config_version.c.version))).scalar_one()


async def apply_app(conn: AsyncConnection, app: AppCfg, ts: int) -> None:
    await upsert(
        conn,
        t.apps,
        [
            dict(
                id=app.id,
                name=app.name,
                user_token_secret=app.user_token_secret,
                enabled=app.enabled,
                settings={},
                updated_ms=ts,
                client_trust=dump(app.client_trust()),
            )
        ],
        ["id"],
    )
    await upsert(
        conn,
        t.server_keys,
        [
            dict(
                app_id=app.id,
                name=k.name,
                key_hash=hash_key(k.key),
                key_prefix=key_prefix(k.key),
                enabled=True,
                created_ms=ts,
            )
            for k in app.server_keys
        ],
        ["app_id", "name"],
        update=["key_hash", "key_prefix", "enabled"],
    )
    await upsert(
        conn,
        t.relay_tokens,
        [
            dict(
                app_id=app.id,
                name=r.name,
                key_hash=hash_key(r.key),
                key_prefix=key_prefix(r.key),
                models=r.models,
                rpm=r.rpm,
                tpm=r.tpm,
                spend_limit=r.spend_limit,
                expires_ms=ms_from_datetime(r.expires_at) if r.expires_at else None,
                enabled=r.enabled,
                created_ms=ts,
            )
            for r in app.relay_tokens
        ],
        ["app_id", "name"],
        update=["key_hash", "key_prefix", "models", "rpm", "tpm", "spend_limit", "expires_ms", "enabled"],
    )
    await upsert(
        conn,
        t.strategies,
        [
            dict(app_id=app.id, name=s.name, module=s.module, spec=dump(s), enabled=s.enabled, updated_ms=ts)
            for s in app.strategies
        ],
        ["app_id", "name"],
    )
    await upsert(
        conn,
        t.instructions,
        [dict(app_id=app.id, name=i.name, spec=dump(i), updated_ms=ts) for i in app.instructions],
        ["app_id", "name"],
    )
    await upsert(
        conn,
        t.asset_policies,
        [dict(app_id=app.id, name=a.name, spec=dump(a), updated_ms=ts) for a in app.assets],
        ["app_id", "name"],
    )
    await upsert(
        conn,
        t.app_webhooks,
        [dict(app_id=app.id, url=w.url, spec=dump(w), updated_ms=ts) for w in app.webhooks],
        ["app_id", "url"],
    )


async def apply_config(engine: AsyncEngine, cfg: Config) -> int:
    """Upsert everything the file declares in one transaction; returns the new version."""
    ts = now_ms()
    async with engine.begin() as conn:
        await upsert(
            conn,
            t.models,
            [dict(name=m.name, price=dump(m.price) if m.price else None, updated_ms=ts) for m in cfg.models],
            ["name"],
        )
        await upsert(
            conn,
            t.platforms,
            [dict(id=p.id, type=p.type, spec=dump(p), enabled=p.enabled, updated_ms=ts) for p in cfg.platforms],
            ["id"],
        )
        for app in cfg.apps:
            await apply_app(conn, app, ts)
        return await bump_version(conn)
