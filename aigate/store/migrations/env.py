"""Alembic environment: runs migrations on the async engine aigate itself uses."""

from __future__ import annotations

import asyncio

from alembic import context

from aigate.store.db import create_engine, is_sqlite
from aigate.store.tables import metadata, migration_filter

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "aigate sets sqlalchemy.url before running migrations"
    return url


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=is_sqlite(_url()),
        compare_type=True,
        include_object=migration_filter(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async())
