"""The Alembic migrations create exactly the schema declared in ``db/tables.py``, on both engines."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import metadata
from gophergate.settings import async_database_url


async def test_migrations_match_declared_tables(database_url: str) -> None:
    url = async_database_url(database_url)
    await asyncio.to_thread(upgrade, url)
    await asyncio.to_thread(upgrade, url)  # idempotent
    engine = create_engine(url)

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
        indexes = await conn.run_sync(
            lambda c: {i["name"] for i in __import__("sqlalchemy").inspect(c).get_indexes("request_log")}
        )
    await engine.dispose()
    assert differences == []
    assert {
        "ix_request_log_created_at",
        "ix_request_log_client_created",
        "ix_request_log_provider_created",
        "ix_request_log_model_created",
        "ix_request_log_status_created",
        "ix_request_log_errors_created",
    } <= indexes
