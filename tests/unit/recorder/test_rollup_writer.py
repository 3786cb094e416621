"""The log writer keeps the rollups equal to the aggregates of the raw rows, on both engines."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from gophergate.core.record import COLUMNS
from gophergate.db.tables import LATENCY_COLUMNS, ROLLUP_KEYS, ROLLUP_SUMS, ROLLUPS
from gophergate.recorder.rollup import PICO, aggregate, floor_time, latency_bucket
from gophergate.recorder.sink import create_sink
from gophergate.recorder.writer import SPILL_PREFIX, replay_spilled
from tests.dashboard_data import aware, cost, migrated_engine, random_record, raw_rows, write


def expected_rollups(rows: list[Any], table: str) -> dict[tuple[Any, ...], list[Any]]:
    """Straight from the raw rows, the slow obvious way."""
    granularity = table.split("_")[1]
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0] * 7 + [Decimal(0), 0] + [0] * 40)
    for row in rows:
        bucket = floor_time(aware(row.created_at), granularity)
        parts = {
            "client_key_id": row.client_key_id or 0,
            "provider": row.provider or "",
            "model": row.model or "",
            "model_group": row.model_group or "",
        }
        key = (bucket, *(parts[k] for k in ROLLUP_KEYS[table]))
        acc = out[key]
        acc[0] += bool(row.final)
        acc[1] += bool(row.final) and row.status >= 400
        acc[2] += row.prompt_tokens
        acc[3] += row.completion_tokens
        acc[4] += row.reasoning_tokens
        acc[5] += row.cache_read_tokens
        acc[6] += row.cache_write_tokens
        acc[7] += cost(row.cost_usd)
        acc[8] += bool(row.price_unknown)
        if row.final:
            acc[9 + latency_bucket(row.latency_ms)] += 1
    return {k: [*v[:7], v[7] * PICO, *v[8:]] for k, v in out.items()}


async def stored_rollups(engine: Any, name: str) -> dict[tuple[Any, ...], list[Any]]:
    table = ROLLUPS[name]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table))).all()
    return {
        (aware(r.bucket), *(getattr(r, k) for k in ROLLUP_KEYS[name])): [
            *(getattr(r, c) for c in ROLLUP_SUMS),
            *(getattr(r, c) for c in LATENCY_COLUMNS),
        ]
        for r in rows
    }


async def assert_rollups_match(engine: Any) -> None:
    raw = await raw_rows(engine)
    for table in ROLLUP_KEYS:  # every granularity and key family
        assert await stored_rollups(engine, table) == expected_rollups(raw, table), table


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rollups_equal_aggregates_of_raw_rows_for_random_batches(database_url: str, seed: int) -> None:
    rng = random.Random(seed)
    engine = await migrated_engine(database_url)
    records = [random_record(rng, i, span_s=rng.choice([120, 7200, 3 * 86400])) for i in range(rng.randint(300, 900))]
    # Several writer runs with different batch sizes: later batches add to rows earlier ones created.
    cut = rng.randint(1, len(records) - 1)
    await write(engine, records[:cut], batch_size=rng.randint(1, 50))
    await write(engine, records[cut:], batch_size=rng.randint(50, 1000))
    await assert_rollups_match(engine)
    await engine.dispose()


async def test_costs_beyond_12_decimals_round_by_at_most_half_a_pico_usd_per_batch(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(9)
    records = [random_record(rng, i, span_s=30) for i in range(40)]
    for record in records:
        record.cost_usd = Decimal(1) / Decimal(3)  # a 1/3 discount factor: infinitely many decimals
        record.client_key_id, record.provider, record.model = 1, "openai", "gpt-4o"
    await write(engine, records, batch_size=10)  # 4 batches
    (stored,) = (await stored_rollups(engine, "rollup_day")).values()
    exact = Decimal(40) / Decimal(3) * PICO
    assert abs(Decimal(stored[ROLLUP_SUMS.index("cost_pusd")]) - exact) <= Decimal("0.5") * 4
    await engine.dispose()


@pytest.mark.parametrize("naive", [False, True], ids=["aware", "sqlite-encoded"])
async def test_replayed_spill_rows_roll_up_too(database_url: str, tmp_path: Path, naive: bool) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(4)
    await write(engine, [random_record(rng, i) for i in range(50)])
    spilled = [random_record(rng, 1000 + i) for i in range(60)]
    path = tmp_path / f"{SPILL_PREFIX}20261126T000000_1.jsonl"
    lines = []
    for record in spilled:
        row = dict(zip(COLUMNS, record.values(), strict=True))
        created = row["created_at"]
        # The SQLite sink spills its encoded rows: naive UTC text; the PostgreSQL one aware datetimes.
        row["created_at"] = (
            created.replace(tzinfo=None).isoformat(" ", "microseconds") if naive else created.isoformat()
        )
        row.update({k: str(v) for k, v in row.items() if isinstance(v, Decimal)})
        lines.append(orjson.dumps(row))
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert await replay_spilled(engine, tmp_path) == 60
    assert not path.exists()
    assert len(await raw_rows(engine)) == 110
    await assert_rollups_match(engine)
    await engine.dispose()


async def test_a_failed_batch_leaves_neither_raw_rows_nor_rollups(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(6)
    good = random_record(rng, 1)
    bad = random_record(rng, 2)
    bad.request_id = None  # type: ignore[assignment]  # NOT NULL: the whole transaction fails
    sink = create_sink(engine)
    values = [good.values(), bad.values()]
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error
        await sink.insert([sink.encode(v) for v in values], sink.encode_deltas(aggregate(values)))
    await sink.close()
    assert await raw_rows(engine) == []
    for table in ROLLUP_KEYS:
        assert await stored_rollups(engine, table) == {}
    await engine.dispose()


def test_bucket_keys_of_a_minute_boundary_row_go_to_that_minute() -> None:
    t = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert floor_time(t, "minute") == t and floor_time(t - dt.timedelta(microseconds=1), "minute") < t
