"""Retention: old raw rows go in small batches, rollups stay (minute rollups after MINUTE_ROLLUP_DAYS)."""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import func, select

from gophergate.db.tables import rollup_day, rollup_hour, rollup_minute, rollup_table
from gophergate.recorder.retention import MINUTE_ROLLUP_DAYS, prune
from tests.dashboard_data import BASE, aware, migrated_engine, random_record, raw_rows, write


async def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _sum_requests(engine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.sum(table.c.requests)))).scalar_one() or 0)


async def test_rows_older_than_the_retention_go_in_batches_and_rollups_stay(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(31)
    await write(engine, [random_record(rng, i, span_s=40 * 86400) for i in range(400)])
    now = BASE + dt.timedelta(days=40)
    cutoff = now - dt.timedelta(days=30)
    old = sum(aware(r.created_at) < cutoff for r in await raw_rows(engine))
    assert 0 < old < 400
    result = await prune(engine, retention_days=30, now=now, batch_size=7, pause=0, minute_rollup_days=0)
    remaining = await raw_rows(engine)
    assert result.raw_rows == old and len(remaining) == 400 - old
    assert all(aware(r.created_at) >= cutoff for r in remaining)
    assert result.batches == old // 7 + 1  # full batches, then the short one that ends the pass
    for table in (rollup_minute, rollup_hour, rollup_day):
        assert await _sum_requests(engine, table) == 400
    again = await prune(engine, retention_days=30, now=now, batch_size=7, pause=0, minute_rollup_days=0)
    assert again.raw_rows == 0
    await engine.dispose()


async def test_zero_days_keeps_raw_rows_forever(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    await write(engine, [random_record(random.Random(32), i) for i in range(50)])
    result = await prune(engine, retention_days=0, now=BASE + dt.timedelta(days=3650), pause=0, minute_rollup_days=0)
    assert result.raw_rows == 0 and len(await raw_rows(engine)) == 50
    await engine.dispose()


async def test_minute_rollups_are_pruned_after_their_days_hour_and_day_kept(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(33)
    await write(engine, [random_record(rng, i, span_s=10 * 86400) for i in range(300)])
    now = BASE + dt.timedelta(days=10)
    cutoff = now - dt.timedelta(days=MINUTE_ROLLUP_DAYS)
    async with engine.connect() as conn:
        buckets = [aware(b) for b in (await conn.execute(select(rollup_minute.c.bucket))).scalars()]
    young = sum(b >= cutoff for b in buckets)
    result = await prune(engine, retention_days=0, now=now, pause=0)
    assert result.minute_rollups == len(buckets) - young and await _count(engine, rollup_minute) == young
    assert await _sum_requests(engine, rollup_hour) == 300 and await _sum_requests(engine, rollup_day) == 300
    # Every key family's minute rollups go (the model family's rows of every model group too).
    for family in ("_model", "_client"):
        async with engine.connect() as conn:
            oldest = (await conn.execute(select(func.min(rollup_table("minute", family).c.bucket)))).scalar_one()
        assert aware(oldest) >= cutoff, family
        assert await _sum_requests(engine, rollup_table("day", family)) == 300, family
    await engine.dispose()


async def test_stored_responses_past_their_time_are_deleted_and_the_others_kept(database_url: str) -> None:
    from gophergate.gateway.stored_responses import ResponseStore
    from gophergate.recorder.retention import prune_stored_responses

    engine = await migrated_engine(database_url)
    store = ResponseStore(engine, ttl_days=30)
    for i in range(3):
        store.keep(7, {"id": f"resp_{i}", "object": "response"}, [{"role": "user", "content": f"turn {i}"}])
    await store.close()  # the database writes are done
    now = dt.datetime.now(dt.UTC)
    assert await prune_stored_responses(engine, now + dt.timedelta(days=29)) == 0
    fresh = ResponseStore(engine, ttl_days=30)  # another process: reads the database
    found = await fresh.load("resp_1", 7)
    assert found is not None and found.messages == [{"role": "user", "content": "turn 1"}]
    assert await fresh.load("resp_1", 8) is None  # another key's response does not exist for it
    assert await prune_stored_responses(engine, now + dt.timedelta(days=31)) == 3
    assert await ResponseStore(engine, ttl_days=30).load("resp_2", 7) is None
    await engine.dispose()
