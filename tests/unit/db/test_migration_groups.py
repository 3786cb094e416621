"""Migration 0010 adds the rollups per model group and fills them from the request log already written (the rows
since 0009 that named a group), exactly as the log writer rolls them up; it goes back down to 0009 dropping only them.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.record import COLUMNS, DECIMAL_COLUMNS
from gophergate.db.engine import create_engine
from gophergate.db.migrate import alembic_config, upgrade
from gophergate.db.tables import LATENCY_COLUMNS, ROLLUP_SUMS, ROLLUPS, metadata, request_log
from gophergate.settings import async_database_url
from tests.dashboard_data import aware, random_record, raw_rows, write

GROUP_TABLES = ("rollup_minute_group", "rollup_hour_group", "rollup_day_group")


async def _groups(engine: AsyncEngine) -> dict[str, dict[tuple[Any, ...], list[int]]]:
    out = {}
    async with engine.connect() as conn:
        for name in GROUP_TABLES:
            table = ROLLUPS[name]
            rows = (await conn.execute(sa.select(table))).all()
            out[name] = {
                (aware(r.bucket), r.model_group): [*(getattr(r, c) for c in (*ROLLUP_SUMS, *LATENCY_COLUMNS))]
                for r in rows
            }
    return out


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_upgrade_from_0009_rolls_up_the_grouped_rows_already_logged(database_url: str) -> None:
    url = async_database_url(database_url)
    cfg = alembic_config(url)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    rng = random.Random(61)
    records = [random_record(rng, i, span_s=2 * 86400) for i in range(400)]
    for record in records[::7]:  # an attempt routing retried: tokens and cost count, the request does not
        record.final, record.status, record.error_class = False, 429, "rate_limited"
    await write(engine, records, batch_size=37)
    written = await _groups(engine)  # what the log writer rolled up, batch by batch
    assert all(written[name] for name in GROUP_TABLES)
    assert {group for _, group in written["rollup_day_group"]} == {"smart", "fast"}
    await engine.dispose()

    await asyncio.to_thread(command.downgrade, cfg, "0009")
    engine = create_engine(url)
    tables = await _tables(engine)
    assert not tables & set(GROUP_TABLES) and {"rollup_minute", "rollup_day_model", "request_log"} <= tables
    assert len(await raw_rows(engine)) == 400  # the raw rows keep their model group
    await engine.dispose()

    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    assert await _groups(engine) == written  # the backfill equals the writer's rollups, key by key

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    # And the writer adds to the backfilled rows like to its own.
    more = [random_record(random.Random(62), 1000 + i, span_s=2 * 86400) for i in range(40)]
    await write(engine, more)
    after = await _groups(engine)
    requests_at = ROLLUP_SUMS.index("requests")
    assert sum(v[requests_at] for v in after["rollup_day_group"].values()) == sum(
        v[requests_at] for v in written["rollup_day_group"].values()
    ) + sum(1 for r in more if r.model_group)
    await engine.dispose()


async def test_upgrade_of_a_log_without_groups_leaves_the_group_rollups_empty(database_url: str) -> None:
    url = async_database_url(database_url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0009")
    engine = create_engine(url)
    rng = random.Random(63)
    rows = []
    for i in range(30):
        row = dict(zip(COLUMNS, random_record(rng, i).values(), strict=True))
        row["model_group"] = None if i % 2 else ""  # plain model names ("" is no group either)
        row.update({c: None for c in DECIMAL_COLUMNS})  # no cost needed here (SQLite's driver takes no Decimal)
        rows.append(row)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(request_log), rows)
    await engine.dispose()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    assert set(GROUP_TABLES) <= await _tables(engine)
    assert await _groups(engine) == {name: {} for name in GROUP_TABLES}
    await engine.dispose()
