"""Migration 0010 splits the per-model rollups by model group: rows already rolled up keep their sums under the group
"" (a plain model name), the schema is the declared one, the writer then adds grouped rows beside them; going back
down to 0009 sums the groups into one row per model again."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.engine import create_engine
from gophergate.db.migrate import alembic_config, upgrade
from gophergate.db.tables import metadata
from gophergate.settings import async_database_url
from tests.dashboard_data import random_record, write

MODEL_TABLES = ("rollup_minute_model", "rollup_hour_model", "rollup_day_model")


async def _rows(engine: AsyncEngine, table: str, grouped: bool) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    group = ", model_group" if grouped else ""
    sql = f"SELECT bucket, provider, model{group}, requests, cache_read_tokens, unpriced FROM {table}"
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(sql))).all()
    width = 4 if grouped else 3
    return {tuple(str(v) for v in row[:width]): tuple(int(v) for v in row[width:]) for row in rows}


def _summed(rows: dict[tuple[Any, ...], tuple[int, int, int]]) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    out: dict[tuple[Any, ...], tuple[int, int, int]] = {}
    for key, values in rows.items():
        before = out.get(key[:3], (0, 0, 0))
        out[key[:3]] = tuple(a + b for a, b in zip(before, values, strict=True))  # type: ignore[assignment]
    return out


async def test_0010_keeps_the_rollups_under_the_empty_group_and_goes_back_down_summing_groups(
    database_url: str,
) -> None:
    url = async_database_url(database_url)
    cfg = alembic_config(url)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    records = [random_record(random.Random(61), i, span_s=2 * 86400) for i in range(300)]
    await write(engine, records)
    grouped = {name: await _rows(engine, name, grouped=True) for name in MODEL_TABLES}
    assert {key[3] for key in grouped["rollup_day_model"]} == {"", "smart", "fast"}
    await engine.dispose()

    await asyncio.to_thread(command.downgrade, cfg, "0009")
    engine = create_engine(url)
    down = {name: await _rows(engine, name, grouped=False) for name in MODEL_TABLES}
    assert down == {name: _summed(rows) for name, rows in grouped.items()}  # one row per model, the same sums
    await engine.dispose()

    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    again = {name: await _rows(engine, name, grouped=True) for name in MODEL_TABLES}
    assert again == {name: {(*key, ""): values for key, values in rows.items()} for name, rows in down.items()}

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    more = [random_record(random.Random(62), 1000 + i, span_s=2 * 86400) for i in range(40)]
    await write(engine, more)  # the writer adds grouped rows beside the migrated ones
    after = await _rows(engine, "rollup_day_model", grouped=True)
    assert sum(v[0] for v in after.values()) == 340
    assert sum(v[0] for k, v in after.items() if k[3]) == sum(1 for r in more if r.model_group)
    await engine.dispose()
