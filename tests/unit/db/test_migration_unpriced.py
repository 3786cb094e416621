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


def _per_model(counts: dict[str, dict[tuple[Any, ...], int]]) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {}
    for name, rows in counts.items():
        if not name.endswith("_model"):
            out[name] = rows
            continue
        summed: dict[tuple[Any, ...], int] = {}
        for key, value in rows.items():
            summed[key[:-1]] = summed.get(key[:-1], 0) + value  # without the model group
        out[name] = summed
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
    # Going down past 0010 sums the per-model rollups' model groups back into one row per model (and 0009's column
    # is gone): compared per model.
    assert _per_model(await _unpriced(engine)) == _per_model(written)
    await engine.dispose()
