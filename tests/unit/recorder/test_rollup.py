"""Pure rollup functions: latency buckets, percentiles, bucket floors, batch aggregation."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from gophergate.core.record import RequestRecord
from gophergate.db.tables import LATENCY_COLUMNS, ROLLUP_KEYS
from gophergate.recorder.rollup import (
    LATENCY_EDGES_MS,
    aggregate,
    delta_columns,
    floor_time,
    latency_bucket,
    percentile,
    percentiles,
    to_pico,
    upsert_sql,
)
from tests.dashboard_data import BASE, random_record


def test_latency_buckets_are_monotone_and_cover_1ms_to_10min() -> None:
    assert latency_bucket(0) == 0 and latency_bucket(0.999) == 0 and latency_bucket(float("nan")) == 0
    assert latency_bucket(1.0) == 1
    assert latency_bucket(599_999) == 38 and latency_bucket(600_000) == 39 and latency_bucket(1e9) == 39
    previous = 0
    for ms in [x / 10 for x in range(0, 10_000)] + [float(x) for x in range(1000, 700_000, 997)]:
        bucket = latency_bucket(ms)
        assert bucket >= previous
        assert LATENCY_EDGES_MS[bucket] <= ms * (1 + 1e-9)
        if bucket < 39:
            assert ms < LATENCY_EDGES_MS[bucket + 1] * (1 + 1e-9)
        previous = bucket


def test_percentiles_from_the_histogram_stay_within_one_bucket_of_the_truth() -> None:
    rng = random.Random(5)
    for _ in range(50):
        values = sorted(rng.lognormvariate(5, 1.5) for _ in range(rng.randint(1, 2000)))
        histogram = [0] * 40
        for value in values:
            histogram[latency_bucket(value)] += 1
        for q in (0.5, 0.95):
            true = values[min(len(values) - 1, int(q * len(values)))]
            estimate = percentile(histogram, q)
            assert estimate is not None
            assert true / 1.43 <= estimate <= true * 1.43 or abs(estimate - true) < 1.0
    assert percentile([0] * 40, 0.5) is None


def test_floor_time_gives_utc_bucket_starts() -> None:
    t = dt.datetime(2026, 11, 26, 13, 47, 59, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert floor_time(t, "minute") == dt.datetime(2026, 11, 26, 11, 47, tzinfo=dt.UTC)
    assert floor_time(t, "hour") == dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC)
    assert floor_time(t, "day") == dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    assert floor_time(dt.datetime(2026, 1, 1, 0, 0, 30), "minute") == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_pico_usd_is_exact_to_12_decimals_and_rounds_half_even_beyond() -> None:
    assert to_pico(Decimal("0.000000075")) == 75_000
    assert to_pico(Decimal("1.000000000001")) == 1_000_000_000_001
    assert to_pico(Decimal("0.0000000000005")) == 0 and to_pico(Decimal("0.0000000000015")) == 2
    assert to_pico(Decimal(1) / Decimal(3)) == 333_333_333_333


def test_aggregate_sums_every_row_into_each_granularity() -> None:
    rng = random.Random(1)
    records = [random_record(rng, i) for i in range(500)]
    deltas = aggregate(r.values() for r in records)
    assert set(deltas) == set(ROLLUP_KEYS)
    for table, rows in deltas.items():
        k = 1 + len(ROLLUP_KEYS[table])  # bucket + key columns
        mine = records
        assert all(len(row) == len(delta_columns(table)) for row in rows)
        assert sum(row[k] for row in rows) == len(mine), table  # requests
        assert sum(row[k + 1] for row in rows) == sum(r.status >= 400 for r in mine)
        assert sum(row[k + 2] for row in rows) == sum(r.prompt_tokens for r in mine)
        assert sum(row[k + 5] for row in rows) == sum(r.cache_read_tokens for r in mine)
        assert sum(row[k + 7] for row in rows) == to_pico(sum((r.cost_usd or Decimal(0)) for r in mine))
        assert sum(row[k + 8] for row in rows) == sum(r.price_unknown for r in mine) > 0  # unpriced
        assert sum(sum(row[k + 9 :]) for row in rows) == len(mine)  # each request in one latency bucket
        keys = [row[:k] for row in rows]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert all(row[0] == floor_time(row[0], table.split("_")[1]) for row in rows)
    assert len(deltas["rollup_day"]) <= len(deltas["rollup_hour"]) <= len(deltas["rollup_minute"])
    assert len(deltas["rollup_hour_model"]) <= len(deltas["rollup_hour"])


def test_the_model_family_is_split_by_model_group_and_plain_rows_are_under_the_empty_group() -> None:
    rng = random.Random(3)
    records = [random_record(rng, i, span_s=7200) for i in range(400)]
    deltas = aggregate(r.values() for r in records)
    columns = delta_columns("rollup_minute_model")
    assert columns[:4] == ("bucket", "provider", "model", "model_group")
    for granularity in ("minute", "hour", "day"):
        rows = deltas[f"rollup_{granularity}_model"]
        expected: dict[tuple[Any, ...], list[int]] = {}
        for r in records:
            key = (floor_time(r.created_at, granularity), r.provider or "", r.model or "", r.model_group or "")
            totals = expected.setdefault(key, [0, 0])
            totals[0] += 1
            totals[1] += r.cache_read_tokens
        assert {row[:4]: [row[4], row[columns.index("cache_read_tokens")]] for row in rows} == expected
        assert {row[3] for row in rows} == {"smart", "fast", ""}


def test_model_groups_change_no_other_family_and_the_model_familys_sums() -> None:
    rng = random.Random(4)
    records = [random_record(rng, i, span_s=3 * 86400) for i in range(600)]
    with_groups = aggregate(r.values() for r in records)
    for record in records[::2]:
        record.model_group = ""  # normalised away elsewhere; an empty group is no group here either
    for record in records[1::2]:
        record.model_group = None
    plain = aggregate(r.values() for r in records)
    for table in ROLLUP_KEYS:
        if not table.endswith("_model"):
            assert plain[table] == with_groups[table], table  # the group is projected away, sums unchanged
            continue
        assert all(row[3] == "" for row in plain[table])
        summed: dict[tuple[Any, ...], list[int]] = {}
        for row in with_groups[table]:
            into = summed.setdefault(row[:3], [0] * (len(row) - 4))
            for i, value in enumerate(row[4:]):
                into[i] += value
        assert {row[:3]: list(row[4:]) for row in plain[table]} == summed, table


def test_aggregate_stores_missing_key_parts_as_sentinels() -> None:
    record = random_record(random.Random(2), 0)
    record.client_key_id, record.provider, record.model = None, None, None
    (row,) = aggregate([record.values()])["rollup_minute"]
    assert row[1:4] == (0, "", "")


def test_upsert_sql_adds_to_the_existing_row() -> None:
    sql = upsert_sql("rollup_hour", "qmark")
    assert sql.startswith("INSERT INTO rollup_hour (bucket, client_key_id, provider, model, requests")
    assert "ON CONFLICT (bucket, client_key_id, provider, model) DO UPDATE SET requests = rollup_hour.requests +" in sql
    assert "lat_39 = rollup_hour.lat_39 + excluded.lat_39" in sql
    assert "$52" in upsert_sql("rollup_day", "numeric_dollar") and "?" not in upsert_sql("rollup_day", "numeric_dollar")
    assert "ON CONFLICT (bucket, provider, model, model_group) DO" in upsert_sql("rollup_day_model", "qmark")
    assert "ON CONFLICT (bucket, client_key_id) DO" in upsert_sql("rollup_minute_client", "qmark")


def test_several_percentiles_in_one_pass_equal_one_at_a_time() -> None:
    rng = random.Random(8)
    for _ in range(200):
        histogram = [rng.choice([0, 0, 0, rng.randint(1, 50)]) for _ in range(40)]
        assert percentiles(histogram, 0.5, 0.95, 0.99) == tuple(percentile(histogram, q) for q in (0.5, 0.95, 0.99))


def _attempt(n: int, *, final: bool, status: int, provider: str, cost: str | None, tokens: int = 0) -> RequestRecord:
    """One row of a request routing tried more than once (all rows share the request id)."""
    return RequestRecord(
        request_id="req-routed",
        endpoint="chat.completions",
        started=0.0,
        created_at=BASE + dt.timedelta(seconds=n),
        client_key_id=1,
        requested_model="fast",
        provider=provider,
        model=f"{provider}-model",
        status=status,
        error_class=None if status < 400 else "rate_limited",
        prompt_tokens=tokens,
        completion_tokens=tokens // 2,
        cost_usd=None if cost is None else Decimal(cost),
        price_unknown=cost is None and tokens > 0,
        latency_ms=100.0 * n,
        attempt=n,
        final=final,
        model_group="fast",
    )


def _totals(deltas: dict[str, list[tuple[Any, ...]]], table: str) -> dict[str, Any]:
    columns = delta_columns(table)
    return {
        name: sum(row[columns.index(name)] for row in deltas[table]) for name in columns[1 + len(ROLLUP_KEYS[table]) :]
    }


def test_a_request_with_failed_attempts_and_a_final_success_counts_once_and_costs_every_attempt() -> None:
    rows = [
        _attempt(1, final=False, status=429, provider="openai", cost="0"),
        _attempt(2, final=False, status=503, provider="anthropic", cost=None, tokens=40),  # cut short, unpriced
        _attempt(3, final=True, status=200, provider="gemini", cost="0.000125", tokens=1000),
    ]
    deltas = aggregate(r.values() for r in rows)
    for table in ROLLUP_KEYS:
        totals = _totals(deltas, table)
        assert totals["requests"] == 1 and totals["errors"] == 0, table
        assert totals["prompt_tokens"] == 1040 and totals["completion_tokens"] == 520, table
        assert totals["cost_pusd"] == to_pico(Decimal("0.000125")) and totals["unpriced"] == 1, table
        assert sum(totals[name] for name in LATENCY_COLUMNS) == 1, table  # the final row's latency only
        assert totals[LATENCY_COLUMNS[latency_bucket(300.0)]] == 1, table
    # Each attempt stays on the provider and model it went to; only the final one counts as a request there.
    by_model = {row[1]: row for row in deltas["rollup_minute_model"]}
    requests_at = delta_columns("rollup_minute_model").index("requests")
    assert {provider: row[requests_at] for provider, row in by_model.items()} == {
        "openai": 0,
        "anthropic": 0,
        "gemini": 1,
    }
    assert by_model["anthropic"][delta_columns("rollup_minute_model").index("prompt_tokens")] == 40


def test_a_request_whose_final_attempt_failed_counts_one_error() -> None:
    rows = [
        _attempt(1, final=False, status=429, provider="openai", cost=None),
        _attempt(2, final=True, status=502, provider="anthropic", cost=None),
    ]
    for table, delta_rows in aggregate(r.values() for r in rows).items():
        totals = _totals({table: delta_rows}, table)
        assert (totals["requests"], totals["errors"], totals["unpriced"]) == (1, 1, 0), table
