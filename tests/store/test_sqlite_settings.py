"""The settings every SQLite connection of the engine opens with (aigate.store.db)."""

from __future__ import annotations

from aigate.store.db import create_engine


async def test_a_connection_opens_with_the_gateways_settings(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/aigate.db")
    try:
        async with engine.connect() as conn:
            settings = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "temp_store")
            }
    finally:
        await engine.dispose()
    # WAL; NORMAL (1); on; temporary storage in memory (2): a flush's statement journal
    # no longer spills to a file created and deleted in /var/tmp
    assert settings == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "temp_store": 2}
