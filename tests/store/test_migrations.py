"""The migrations build exactly the schema the code declares, on each database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.tables import metadata, migration_filter


async def test_migrations_match_the_table_definitions(db_url):
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"include_object": migration_filter(c.dialect.name)}), metadata
                )
            )
        assert diff == []
    finally:
        await engine.dispose()
