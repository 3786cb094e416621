"""Migration 0006 adds the rollups' ``unpriced`` count and fills it from the request log already written."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.engine import create_engine
from gophergate.db.migrate import alembic_config, upgrade
from gophergate.db.tables import ROLLUP_KEYS, ROLLUPS
from gophergate.settings import async_database_url
from tests.dashboard_data import aware, migrated_engine, random_record, write


async def _unpriced(engine: AsyncEngine) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {}
    async with engine.connect() as conn:
        for name, keys in ROLLUP_KEYS.items():
            table = ROLLUPS[name]
            rows = (await conn.execute(select(table.c.bucket, *(table.c[k] for k in keys), table.c.unpriced))).all()
            out[name] = {(aware(r[0]), *r[1:-1]): r[-1] for r in rows}
    return out


async def test_upgrade_counts_the_unpriced_rows_already_logged(database_url: str) -> None:
    url = async_database_url(database_url)
    engine = await migrated_engine(database_url)
    rng = random.Random(51)
    await write(engine, [random_record(rng, i) for i in range(300)])
    written = await _unpriced(engine)  # what the writer counted
    assert sum(written["rollup_day"].values()) > 0
    await engine.dispose()

    # Back to 0005 (no column), then up again: the backfill must find the same counts in the raw rows.
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0005")
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    # The per-group rollups (0010) are rebuilt from model_group, which going down to 0005 dropped (0009's column).
    again = await _unpriced(engine)
    assert {name: counts for name, counts in again.items() if not name.endswith("_group")} == {
        name: counts for name, counts in written.items() if not name.endswith("_group")
    }
    assert not any(again[name] for name in again if name.endswith("_group"))
    await engine.dispose()
