"""The log writer keeps ``client_keys.last_used_at`` current: the newest row of each key, one UPDATE per key and
batch (never one per request), never backwards, on both engines."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.services import keys as key_service
from gophergate.core.record import COLUMNS, RequestRecord
from gophergate.db.tables import client_keys
from gophergate.recorder.rollup import aggregate
from gophergate.recorder.sink import SqliteSink, last_used
from tests.dashboard_data import BASE, aware, migrated_engine, random_record, write


async def _new_keys(engine: AsyncEngine, n: int) -> list[int]:
    return [(await key_service.create(engine, f"key-{i}"))[0] for i in range(n)]


async def _last_used(engine: AsyncEngine) -> dict[int, dt.datetime | None]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(client_keys.c.id, client_keys.c.last_used_at))).all()
    return {row.id: None if row.last_used_at is None else aware(row.last_used_at) for row in rows}


def _newest(records: list[RequestRecord]) -> dict[int, dt.datetime]:
    newest: dict[int, dt.datetime] = {}
    for record in records:
        if record.client_key_id is not None:
            at = aware(record.created_at)
            newest[record.client_key_id] = max(at, newest.get(record.client_key_id, at))
    return newest


async def test_last_used_is_the_newest_row_of_each_key(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    used, idle_one, unused = await _new_keys(engine, 3)
    rng = random.Random(31)
    records = [random_record(rng, i, span_s=7200) for i in range(400)]
    for record in records:
        record.client_key_id = rng.choice([used, used, idle_one, None])
    records[-1].client_key_id = idle_one  # at least one row each
    await write(engine, records, batch_size=37)  # many batches, each touching each key at most once
    expected: dict[int, dt.datetime | None] = {unused: None, **_newest(records)}
    assert await _last_used(engine) == expected
    await engine.dispose()


async def test_last_used_never_moves_backwards(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    (key,) = await _new_keys(engine, 1)
    rng = random.Random(32)

    def batch(start: dt.datetime, first: int) -> list[RequestRecord]:
        out = [random_record(rng, first + i, start=start, span_s=600) for i in range(20)]
        for record in out:
            record.client_key_id = key
        return out

    late = batch(BASE + dt.timedelta(hours=5), 0)
    await write(engine, late)
    newest = _newest(late)[key]
    # Older rows written afterwards (a spill file replayed at the next start, a slow worker's batch): no change.
    await write(engine, batch(BASE, 100))
    assert (await _last_used(engine))[key] == newest
    newer = batch(BASE + dt.timedelta(days=1), 200)
    await write(engine, newer)
    assert (await _last_used(engine))[key] == _newest(newer)[key] > newest
    await engine.dispose()


async def test_a_batch_updates_each_key_once_in_its_transaction(tmp_path: Any) -> None:
    """SQLite (the statements are traced): 200 rows of two keys and some without a key -> two UPDATEs."""
    url = f"sqlite:///{tmp_path / 'gophergate.db'}"
    engine = await migrated_engine(url)
    a, b = await _new_keys(engine, 2)
    rng = random.Random(33)
    records = [random_record(rng, i) for i in range(200)]
    for record in records:
        record.client_key_id = rng.choice([a, b, None])
    values = [r.values() for r in records]
    sink = SqliteSink(f"sqlite+aiosqlite:///{tmp_path / 'gophergate.db'}")
    statements: list[str] = []
    sink._connection().set_trace_callback(statements.append)
    await sink.insert([sink.encode(v) for v in values], sink.encode_deltas(aggregate(values)))
    await sink.close()
    updates = [s for s in statements if s.startswith("UPDATE client_keys")]
    assert len(updates) == 2, updates
    assert statements.index(updates[-1]) < statements.index("COMMIT")  # inside the batch's transaction
    assert await _last_used(engine) == _newest(records)
    await engine.dispose()


def test_last_used_takes_the_newest_time_per_key_in_key_order() -> None:
    base = BASE.replace(tzinfo=None)
    text = [(base + dt.timedelta(seconds=s)).isoformat(" ", "microseconds") for s in (5, 70, 3, 3600)]
    rows: list[tuple[Any, ...]] = []
    for key, at in ((7, text[0]), (2, text[1]), (7, text[3]), (None, text[3]), (2, text[2]), (0, text[3])):
        record = RequestRecord(request_id="r", endpoint="chat.completions", started=0.0, client_key_id=key)
        row = list(record.values())
        row[COLUMNS.index("created_at")] = at  # as SqliteSink.encode writes it
        rows.append(tuple(row))
    # Naive-UTC text (SQLite) orders like the time; a row without a key (or the rollups' 0 sentinel) touches nothing.
    assert last_used(rows) == [(text[1], 2), (text[3], 7)]
