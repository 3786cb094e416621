"""Analytics from rollups: equal to the raw rows' aggregates for any range, bucket and grouping; CSV shape."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import delete

from gophergate.admin.queries.analytics import (
    CSV_COLUMNS,
    MAX_POINTS,
    MAX_POINTS_GROUPED,
    choose_bucket,
    pico_usd,
    segments,
    timeseries,
    timeseries_csv,
    top,
    totals,
)
from gophergate.db.tables import request_log
from gophergate.recorder.rollup import floor_time
from tests.dashboard_data import BASE, aware, cost, migrated_engine, random_record, raw_rows, write

NOW = BASE + dt.timedelta(days=3)  # minute rollups of the whole data set are still kept at this "now"


def _sum(rows: list[Any]) -> dict[str, Any]:
    unpriced = sum(bool(r.price_unknown) for r in rows)
    prompt = sum(r.prompt_tokens for r in rows)
    return {
        "requests": len(rows),
        "errors": sum(r.status >= 400 for r in rows),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        # Never a silent 0: null when no row had a known price, and the unpriced rows counted beside it.
        "cost_usd": None if rows and unpriced == len(rows) else sum((cost(r.cost_usd) for r in rows), Decimal(0)),
        "unpriced_requests": unpriced,
        # Cache reads over prompt tokens (which include them); null without prompt tokens.
        "cache_hit_ratio": round(sum(r.cache_read_tokens for r in rows) / prompt, 4) if prompt else None,
    }


def _target(row: Any) -> str | None:
    """A row's routing target as the analytics key it: provider/model (None for a row that reached none)."""
    return None if not (row.provider or row.model) else f"{row.provider or ''}/{row.model or ''}"


def _ceil_minute(t: dt.datetime) -> dt.datetime:
    f = floor_time(t, "minute")
    return f if f == t else f + dt.timedelta(minutes=1)


def test_segments_tile_the_range_with_the_coarsest_rollups() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        a = BASE + dt.timedelta(seconds=rng.uniform(-5 * 86400, 5 * 86400))
        b = a + dt.timedelta(seconds=rng.choice([30, 600, 5000, 90_000, 400_000]) * rng.random())
        parts = sorted(segments(a, b, NOW + dt.timedelta(days=30)), key=lambda p: p[1])
        if not parts:
            assert floor_time(a, "minute") >= _ceil_minute(b)
            continue
        assert parts[0][1] <= a < parts[0][1] + dt.timedelta(hours=1)
        assert b <= parts[-1][2] < b + dt.timedelta(hours=1)
        for (_, _, hi), (_, lo, _) in itertools.pairwise(parts):
            assert hi == lo  # no gap, no overlap
        for granularity, lo, hi in parts:
            assert floor_time(lo, granularity) == lo and floor_time(hi, granularity) == hi
        assert sum(1 for p in parts if p[0] == "minute") <= 2 and sum(1 for p in parts if p[0] == "hour") <= 2


async def test_totals_equal_raw_aggregates_for_random_ranges(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(21)
    await write(engine, [random_record(rng, i) for i in range(800)])
    raw = await raw_rows(engine)
    for _ in range(25):
        a = BASE + dt.timedelta(seconds=rng.uniform(-3600, 3 * 86400))
        b = a + dt.timedelta(seconds=rng.uniform(1, 2 * 86400))
        lo, hi = floor_time(a, "minute"), _ceil_minute(b)
        expected = _sum([r for r in raw if lo <= aware(r.created_at) < hi])
        got = await totals(engine, a, b, now=NOW)
        assert {k: got[k] for k in expected} == {**expected, "cost_usd": _usd(expected["cost_usd"])}, (a, b)
        assert (got["p50_ms"] is None) == (expected["requests"] == 0)
    await engine.dispose()


def _usd(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return "0" if value == 0 else format(value.normalize(), "f")


async def test_edges_older_than_the_minute_rollups_count_whole_hours(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(22)
    await write(engine, [random_record(rng, i) for i in range(300)])
    raw = await raw_rows(engine)
    a, b = BASE + dt.timedelta(hours=2, minutes=17), BASE + dt.timedelta(hours=40, minutes=5)
    got = await totals(engine, a, b, now=NOW + dt.timedelta(days=60))
    lo, hi = floor_time(a, "hour"), floor_time(b, "hour") + dt.timedelta(hours=1)
    assert got["requests"] == sum(lo <= aware(r.created_at) < hi for r in raw)
    await engine.dispose()


async def test_timeseries_points_equal_raw_aggregates_per_bucket_and_group(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(23)
    await write(engine, [random_record(rng, i) for i in range(600)])
    raw = await raw_rows(engine)
    start, end = BASE + dt.timedelta(minutes=7), BASE + dt.timedelta(hours=50)
    for bucket in ("minute", "hour", "day"):
        for group_by, attr in (
            ("none", None),
            ("model", "model"),
            ("provider", "provider"),
            ("target", "target"),
            ("client", "client"),
            ("group", "model_group"),
        ):
            result = await timeseries(engine, start, end, bucket, group_by, now=NOW)  # type: ignore[arg-type]
            got_bucket = result["bucket"]
            assert got_bucket == ("hour" if bucket == "minute" else bucket)  # 50 h of minutes: > MAX_POINTS
            expected: dict[tuple[Any, str], list[Any]] = defaultdict(list)
            first = floor_time(start, got_bucket)
            for r in raw:
                t = aware(r.created_at)
                if attr == "model_group" and not r.model_group:
                    continue  # per model group: only the requests that named one
                if first <= t and floor_time(t, got_bucket) < end:  # whole buckets: the last one too
                    key = None
                    if attr == "client":
                        key = str(r.client_key_id) if r.client_key_id else None
                    elif attr == "target":
                        key = _target(r)
                    elif attr:
                        key = getattr(r, attr)
                    expected[(key, floor_time(t, got_bucket).isoformat().replace("+00:00", "Z"))].append(r)
            keys = {k for k, _ in expected}
            assert {s["key"] for s in result["series"]} == keys
            if group_by == "group":
                assert keys == {"smart", "fast"}
            if group_by == "target":
                assert "openai/gpt-4o" in keys and None in keys
            for series in result["series"]:
                stamps = [p["t"] for p in series["points"]]
                assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
                assert stamps[0] == first.isoformat().replace("+00:00", "Z")
                for point in series["points"]:
                    rows = expected.get((series["key"], point["t"]), [])
                    want = _sum(rows)
                    assert {k: point[k] for k in want} == {**want, "cost_usd": _usd(want["cost_usd"])}, (
                        bucket,
                        group_by,
                        series["key"],
                        point["t"],
                    )
                    assert point["error_rate"] == (round(want["errors"] / len(rows), 4) if rows else 0.0)
                    assert point["reasoning_tokens"] == sum(r.reasoning_tokens for r in rows)
                    assert point["cache_read_tokens"] == sum(r.cache_read_tokens for r in rows)
    await engine.dispose()


async def test_an_empty_range_gives_one_series_of_zero_points(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    result = await timeseries(engine, BASE, BASE + dt.timedelta(hours=3), "hour", "none", now=NOW)
    assert result["bucket"] == "hour" and [s["key"] for s in result["series"]] == [None]
    points = result["series"][0]["points"]
    assert [p["t"] for p in points] == [
        f"2026-11-{d}T{h}:00:00Z" for d, h in (("20", 23), ("21", "00"), ("21", "01"), ("21", "02"))
    ]
    assert all(p["requests"] == 0 and p["cost_usd"] == "0" and p["p95_ms"] is None for p in points)
    assert all(p["cache_hit_ratio"] is None for p in points)
    assert await totals(engine, BASE, BASE + dt.timedelta(days=1), now=NOW) == {
        "requests": 0,
        "errors": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": "0",
        "unpriced_requests": 0,
        "p50_ms": None,
        "p95_ms": None,
        "cache_hit_ratio": None,
    }
    assert await top(engine, BASE, BASE + dt.timedelta(days=1), now=NOW) == {"data": []}
    assert await top(engine, BASE, BASE + dt.timedelta(days=1), by="group", now=NOW) == {"data": []}
    await engine.dispose()


def test_a_bucket_is_coarsened_past_max_points_or_when_its_rollup_is_pruned() -> None:
    now = BASE
    assert choose_bucket(now - dt.timedelta(hours=24), now, "minute", now) == "minute"  # 1440 points
    assert choose_bucket(now - dt.timedelta(minutes=MAX_POINTS + 1), now, "minute", now) == "hour"
    assert choose_bucket(
        now - dt.timedelta(days=8), now - dt.timedelta(days=8) + dt.timedelta(hours=1), "minute", now
    ) == ("hour")
    assert choose_bucket(now - dt.timedelta(days=365), now, "hour", now) == "day"
    assert choose_bucket(now - dt.timedelta(days=3650), now, "day", now) == "day"
    assert choose_bucket(now - dt.timedelta(days=30), now, "hour", now, MAX_POINTS_GROUPED) == "day"


async def test_grouped_series_are_coarsened_sooner_than_ungrouped_ones(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    start, end = BASE, BASE + dt.timedelta(days=30)
    assert (await timeseries(engine, start, end, "hour", "none", now=end))["bucket"] == "hour"  # 720 points
    assert (await timeseries(engine, start, end, "hour", "model", now=end))["bucket"] == "day"  # 720 > 500 per series
    await engine.dispose()


async def test_top_ranks_by_the_metric_and_keeps_n(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(24)
    await write(engine, [random_record(rng, i) for i in range(500)])
    raw = await raw_rows(engine)
    start, end = BASE - dt.timedelta(days=1), BASE + dt.timedelta(days=4)
    for metric in ("cost", "requests", "tokens"):
        result = await top(engine, start, end, "provider", metric, 10, now=NOW)  # type: ignore[arg-type]
        by: dict[Any, list[Any]] = defaultdict(list)
        for r in raw:
            by[r.provider].append(r)
        assert {i["key"] for i in result["data"]} == set(by)
        for item in result["data"]:
            rows = by[item["key"]]
            assert item["requests"] == len(rows)
            assert item["tokens"] == sum(r.prompt_tokens + r.completion_tokens for r in rows)
            assert item["cost_usd"] == _usd(_sum(rows)["cost_usd"])
            assert item["unpriced_requests"] == sum(bool(r.price_unknown) for r in rows)
            assert item["cache_hit_ratio"] == _sum(rows)["cache_hit_ratio"]
        values = [Decimal(i["cost_usd"] or -1) if metric == "cost" else i[metric] for i in result["data"]]
        assert values == sorted(values, reverse=True)
    for by_name, key_of in (("target", _target), ("group", lambda r: r.model_group)):
        result = await top(engine, start, end, by_name, "requests", 100, now=NOW)  # type: ignore[arg-type]
        grouped: dict[Any, list[Any]] = defaultdict(list)
        for r in raw:
            if by_name == "target" or r.model_group:
                grouped[key_of(r)].append(r)
        assert {i["key"] for i in result["data"]} == set(grouped), by_name
        for item in result["data"]:
            want = _sum(grouped[item["key"]])
            assert (item["requests"], item["cost_usd"], item["cache_hit_ratio"]) == (
                want["requests"],
                _usd(want["cost_usd"]),
                want["cache_hit_ratio"],
            ), (by_name, item["key"])
    two = await top(engine, start, end, "model", "requests", 2, now=NOW)
    assert len(two["data"]) == 2
    await engine.dispose()


async def test_analytics_read_rollups_only_so_they_survive_raw_row_deletion(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(25)
    await write(engine, [random_record(rng, i) for i in range(200)])
    start, end = BASE - dt.timedelta(days=1), BASE + dt.timedelta(days=4)
    before = (await totals(engine, start, end, now=NOW), await timeseries(engine, start, end, "hour", "model", now=NOW))
    async with engine.begin() as conn:
        await conn.execute(delete(request_log))
    after = (await totals(engine, start, end, now=NOW), await timeseries(engine, start, end, "hour", "model", now=NOW))
    assert before == after and before[0]["requests"] == 200
    await engine.dispose()


async def test_csv_has_a_header_and_one_line_per_point_and_series(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(26)
    records = [random_record(rng, i, span_s=3 * 3600) for i in range(100)]
    records[0].provider, records[0].model = "custom", "=HYPERLINK(evil)"
    await write(engine, records)
    result = await timeseries(engine, BASE, BASE + dt.timedelta(hours=4), "hour", "model", now=NOW)
    rows = list(csv.reader(io.StringIO(timeseries_csv(result))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + sum(len(s["points"]) for s in result["series"])
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    assert sum(int(r[2]) for r in rows[1:]) == 100
    assert "'=HYPERLINK(evil)" in {r[1] for r in rows} and "=HYPERLINK(evil)" not in {r[1] for r in rows}
    await engine.dispose()


def test_pico_usd_strings_are_exact() -> None:
    assert pico_usd(0) == "0" and pico_usd(1) == "0.000000000001" and pico_usd(123_000_000) == "0.000123"
    assert pico_usd(5_000_000_000_000) == "5" and pico_usd(12_345_678_900_000_000) == "12345.6789"
    rng = random.Random(1)
    for _ in range(1000):
        value = rng.randint(0, 10**20)
        assert Decimal(pico_usd(value)) == Decimal(value).scaleb(-12)


async def test_unpriced_requests_are_counted_and_an_all_unpriced_group_has_no_cost(database_url: str) -> None:
    """An unknown price is never a silent 0: a model whose requests all lack a price has cost_usd null (in the
    totals of its range, its points and its top row), and every total says how many requests it leaves out."""
    engine = await migrated_engine(database_url)
    rng = random.Random(27)
    records = [random_record(rng, i, span_s=3600) for i in range(60)]
    for record in records:  # priced requests of one model...
        record.provider, record.model, record.cost_usd, record.price_unknown = (
            "openai",
            "gpt-4o",
            Decimal("0.01"),
            False,
        )
    for record in records[:20]:  # ...and an unpriced custom model
        record.provider, record.model, record.cost_usd, record.price_unknown = "acme", "house-model", None, True
    await write(engine, records)
    start, end = BASE, BASE + dt.timedelta(hours=2)
    got = await totals(engine, start, end, now=NOW)
    assert got["requests"] == 60 and got["unpriced_requests"] == 20 and got["cost_usd"] == "0.4"
    ranked = (await top(engine, start, end, "model", "cost", 10, now=NOW))["data"]
    assert [(i["key"], i["cost_usd"], i["unpriced_requests"]) for i in ranked] == [
        ("gpt-4o", "0.4", 0),
        ("house-model", None, 20),  # no known cost: ranked after every known one, never as $0
    ]
    series = (await timeseries(engine, start, end, "hour", "model", now=NOW))["series"]
    house = next(s for s in series if s["key"] == "house-model")
    assert sum(p["unpriced_requests"] for p in house["points"]) == 20
    assert all(p["cost_usd"] is None for p in house["points"] if p["requests"])
    assert all(p["cost_usd"] == "0" for p in house["points"] if not p["requests"])  # no request, nothing unknown
    before = await totals(engine, start, end, now=NOW)
    async with engine.begin() as conn:
        await conn.execute(delete(request_log))  # rollups only from here on
    assert await totals(engine, start, end, now=NOW) == before
    csv_rows = list(csv.DictReader(io.StringIO(timeseries_csv({"bucket": "hour", "series": series}))))
    assert sum(int(r["unpriced_requests"]) for r in csv_rows if r["key"] == "house-model") == 20
    assert {r["cost_usd"] for r in csv_rows if r["key"] == "house-model" and r["requests"] != "0"} == {""}
    await engine.dispose()


async def test_a_retried_request_counts_once_and_its_attempts_keep_their_tokens_and_cost(database_url: str) -> None:
    """Routing writes a row per attempt: analytics count the request once (its final row), and each attempt's
    tokens and cost stay on the provider it went to, even one that has no final row (no request) of its own."""
    engine = await migrated_engine(database_url)
    rng = random.Random(28)
    attempts = [random_record(rng, i, span_s=60) for i in range(3)]
    for n, (record, (provider, status, price)) in enumerate(
        zip(attempts, [("openai", 429, "0"), ("acme", 502, None), ("anthropic", 200, "0.02")], strict=True), start=1
    ):
        record.request_id, record.attempt, record.final = "req-routed", n, n == 3
        record.provider = record.model = provider
        record.status, record.cost_usd, record.price_unknown = (
            status,
            None if price is None else Decimal(price),
            not price,
        )
        record.prompt_tokens, record.completion_tokens = 10 * n, n
    later = random_record(rng, 9, start=BASE + dt.timedelta(hours=2), span_s=60)
    later.provider = later.model = "anthropic"
    later.status, later.cost_usd, later.price_unknown = 200, Decimal("0.01"), False
    await write(engine, [*attempts, later])

    first_hour = await totals(engine, BASE, BASE + dt.timedelta(hours=1), now=NOW)
    assert (first_hour["requests"], first_hour["errors"], first_hour["unpriced_requests"]) == (1, 0, 1)
    assert first_hour["prompt_tokens"] == 60 and first_hour["completion_tokens"] == 6
    assert first_hour["cost_usd"] == "0.02"  # the final attempt's known cost shows beside the unpriced attempt
    ranked = (await top(engine, BASE, BASE + dt.timedelta(hours=3), "provider", "cost", 10, now=NOW))["data"]
    assert [(i["key"], i["requests"], i["tokens"], i["cost_usd"], i["unpriced_requests"]) for i in ranked] == [
        ("anthropic", 2, 33 + later.prompt_tokens + later.completion_tokens, "0.03", 0),
        ("openai", 0, 11, "0", 0),
        ("acme", 0, 22, None, 1),
    ]
    await engine.dispose()


async def test_cache_hit_ratio_per_target_and_per_model_group(database_url: str) -> None:
    """cache_read_tokens / prompt_tokens, 4 decimals, per routing target (provider/model) and per model group; null
    where there were no prompt tokens. Plain model names are in the per-target figures, never in a group's."""
    engine = await migrated_engine(database_url)
    rng = random.Random(29)
    spec = [
        # (provider, model, group, prompt, cache read)
        ("openai", "gpt-4o", "smart", 1000, 750),
        ("openai", "gpt-4o", "smart", 1000, 0),
        ("openai-eu", "gpt-4o", "smart", 3000, 1000),
        ("anthropic", "claude-sonnet-4", None, 700, 700),  # a plain model name
        ("gemini", "gemini-2.5-flash", "fast", 0, 0),  # no prompt tokens: no ratio
    ]
    records = []
    for i, (provider, model, group, prompt, cache_read) in enumerate(spec):
        record = random_record(rng, i, span_s=600)
        record.provider, record.model, record.model_group = provider, model, group
        record.prompt_tokens, record.cache_read_tokens = prompt, cache_read
        records.append(record)
    await write(engine, records)
    start, end = BASE, BASE + dt.timedelta(hours=1)

    by_target = {i["key"]: i["cache_hit_ratio"] for i in (await top(engine, start, end, "target", now=NOW))["data"]}
    assert by_target == {
        "openai/gpt-4o": 0.375,
        "openai-eu/gpt-4o": 0.3333,
        "anthropic/claude-sonnet-4": 1.0,
        "gemini/gemini-2.5-flash": None,
    }
    by_group = {
        i["key"]: (i["requests"], i["cache_hit_ratio"])
        for i in (await top(engine, start, end, "group", now=NOW))["data"]
    }
    assert by_group == {"smart": (3, 0.35), "fast": (1, None)}  # 1750 / 5000; the plain request is in neither
    assert (await totals(engine, start, end, now=NOW))["cache_hit_ratio"] == round(2450 / 5700, 4)

    series = (await timeseries(engine, start, end, "hour", "group", now=NOW))["series"]
    assert [s["key"] for s in series] == ["fast", "smart"]
    smart = [p for p in series[1]["points"] if p["requests"]]
    assert len(smart) == 1 and smart[0]["cache_hit_ratio"] == 0.35
    targets = (await timeseries(engine, start, end, "hour", "target", now=NOW))["series"]
    assert {s["key"] for s in targets} == set(by_target)
    rows = list(csv.DictReader(io.StringIO(timeseries_csv({"bucket": "hour", "series": series}))))
    assert {r["key"]: r["cache_hit_ratio"] for r in rows if r["requests"] != "0"} == {"smart": "0.35", "fast": ""}
    await engine.dispose()
