"""Cross-reference checks for Admin API writes, run inside the write's transaction.

They are the file loader's checks (``strategy_errors``, ``instruction_errors``), fed with
the committed-or-being-written rows instead of the file, so an object that the file
would reject is rejected here with the same messages.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigate.api.admin.common import not_found
from aigate.config.loader import instruction_errors, strategy_errors
from aigate.config.schema import InstructionCfg, PlatformCfg, StrategyCfg
from aigate.store import tables as t


async def require_app(conn: AsyncConnection, app_id: str) -> None:
    found = await conn.execute(select(t.apps.c.id).where(t.apps.c.id == app_id))
    if found.first() is None:
        raise not_found(f"unknown app '{app_id}'")


async def platform_cfgs(conn: AsyncConnection) -> dict[str, PlatformCfg]:
    rows = await conn.execute(select(t.platforms.c.id, t.platforms.c.spec, t.platforms.c.enabled))
    return {r.id: PlatformCfg.model_validate({**r.spec, "enabled": r.enabled}) for r in rows}


async def asset_names(conn: AsyncConnection, app_id: str) -> set[str]:
    rows = await conn.execute(select(t.asset_policies.c.name).where(t.asset_policies.c.app_id == app_id))
    return {r.name for r in rows}


async def app_objects(
    conn: AsyncConnection, app_id: str | None = None
) -> tuple[list[tuple[str, StrategyCfg]], list[tuple[str, InstructionCfg]]]:
    """Every (app_id, strategy) and (app_id, instruction), of one app or of all."""
    s_query = select(t.strategies)
    i_query = select(t.instructions)
    if app_id is not None:
        s_query = s_query.where(t.strategies.c.app_id == app_id)
        i_query = i_query.where(t.instructions.c.app_id == app_id)
    strategies = [
        (r.app_id, StrategyCfg.model_validate({**r.spec, "enabled": r.enabled}))
        for r in await conn.execute(s_query.order_by(t.strategies.c.app_id, t.strategies.c.name))
    ]
    instructions = [
        (r.app_id, InstructionCfg.model_validate(r.spec))
        for r in await conn.execute(i_query.order_by(t.instructions.c.app_id, t.instructions.c.name))
    ]
    return strategies, instructions


async def dependent_errors(conn: AsyncConnection, app_id: str | None = None) -> list[str]:
    """Re-check every strategy and instruction (of one app, or all) against the platforms
    and asset policies as they are now in this transaction: run after a change that others
    depend on (a platform's models, a deleted platform or asset policy)."""
    platforms = await platform_cfgs(conn)
    strategies, instructions = await app_objects(conn, app_id)
    assets: dict[str, set[str]] = {}
    errors: list[str] = []
    for owner in {o for o, _ in strategies} | {o for o, _ in instructions}:
        assets[owner] = await asset_names(conn, owner)
    for owner, s in strategies:
        path = f"apps[{owner}].strategies[{s.name}]"
        errors += strategy_errors(path, s, platforms, assets[owner])
    for owner, ins in instructions:
        path = f"apps[{owner}].instructions[{ins.name}]"
        errors += instruction_errors(path, ins, platforms, assets[owner])
    return errors
