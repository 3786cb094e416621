"""Analytics from the rollup tables only (never request_log): time series, top N, totals, CSV.

Time series read the rollup of the requested bucket. A range that would give more than ``MAX_POINTS`` points
(``MAX_POINTS_GROUPED`` per series when grouped), or minute buckets older than the minute rollups' retention, is
answered with the next coarser bucket (the answer's ``bucket`` says which). Totals and top N cover ``[from, to)``
exactly to the minute by reading the coarsest rollups that fit: whole days from the day rollup, whole hours at the
edges from the hour rollup, the remaining minutes from the minute rollup (where those are pruned, the edge hours are
counted whole).

A cost is never a silent 0: every metric set carries ``unpriced_requests`` (requests with tokens but no known price,
whose cost is not in ``cost_usd``), and ``cost_usd`` is null when every request of the group was unpriced. Every
metric set also carries ``cache_hit_ratio``: cache-read tokens over prompt tokens (prompt tokens include the cached
ones), null without prompt tokens.

Groupings: ``model``, ``provider``, ``target`` (``provider/model``, a routing target) and ``group`` (the model group;
only requests that named one) read the per-model rollups, whose rows are split by model group; ``client`` the
per-client ones.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, Table, func, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.queries.common import iso, utc
from gophergate.db.tables import LATENCY_COLUMNS, rollup_table
from gophergate.recorder.retention import MINUTE_ROLLUP_DAYS
from gophergate.recorder.rollup import floor_time, percentiles, sqlite_bucket

Bucket = Literal["minute", "hour", "day"]
GroupBy = Literal["none", "model", "provider", "target", "client", "group"]
TopBy = Literal["model", "provider", "target", "client", "group"]
Metric = Literal["cost", "requests", "tokens"]

MAX_POINTS = 1500
# Grouped series cost series x points (a 30-day hourly chart per model is 10,000+ points, 200+ ms): fewer per series.
# 250 keeps the worst case near 100 ms on 1M rows (500 per series touched the 200 ms target).
MAX_POINTS_GROUPED = 250
STEP = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
_COARSER: dict[str, Bucket] = {"minute": "hour", "hour": "day"}
_TOKENS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cache_read_tokens", "cache_write_tokens")
_SPLIT = 1_000_000  # cost sums as (sum of pUSD // 1e6, sum of pUSD % 1e6): no BIGINT overflow in SQLite's SUM
CSV_COLUMNS = (
    "t",
    "key",
    "requests",
    "errors",
    "error_rate",
    *_TOKENS,
    "cost_usd",
    "unpriced_requests",
    "p50_ms",
    "p95_ms",
    "cache_hit_ratio",
)


def _family(group_by: str) -> str:
    """The smallest rollup table family that has the grouping key (see db/tables.py)."""
    if group_by == "client":
        return "_client"
    return "_model"  # model groups too: the model family's rows carry the group ("" for a plain model name)


def _only_groups(query: Any, table: Any, group_by: str) -> Any:
    """Per model group: the requests that named one."""
    return query.where(table.c.model_group != "") if group_by == "group" else query


def _key_columns(table: Table, group_by: str) -> list[ColumnElement[Any]]:
    """The grouping's key columns (none ungrouped). A target is grouped by provider and model, its rollups' own key
    (a string built in SQL cost a fifth more time on a per-target chart), and named in ``_key_json``."""
    if group_by == "none":
        return []
    if group_by == "target":
        return [table.c.provider, table.c.model]
    column = {"model": "model", "provider": "provider", "client": "client_key_id", "group": "model_group"}[group_by]
    return [table.c[column]]


def _key_json(values: Sequence[Any], group_by: str) -> str | None:
    """A group's key in the answer: as stored, ``provider/model`` for a target (as the gateway names a target: the
    x-gophergate-served-by header); None ungrouped and for requests without one (stored as 0 or "")."""
    if group_by == "none":
        return None
    if group_by == "target":
        provider, model = values
        return f"{provider}/{model}" if provider or model else None
    value = values[0]
    return None if value in (None, "", 0) else str(value)


def _sums(source: Any) -> list[ColumnElement[Any]]:
    c = source.c
    return [
        func.sum(c.requests),
        func.sum(c.errors),
        *(func.sum(c[name]) for name in _TOKENS),
        func.sum(c.cost_pusd // _SPLIT),
        func.sum(c.cost_pusd % _SPLIT),
        func.sum(c.unpriced),
        *(func.sum(c[name]) for name in LATENCY_COLUMNS),
    ]


_LATENCY_AT = 10  # where the latency histogram starts in ``_sums``
_EMPTY = (0,) * (_LATENCY_AT + len(LATENCY_COLUMNS))


def _metrics(values: Sequence[Any]) -> dict[str, Any]:
    """JSON metrics from the summed values (``_sums`` order)."""
    requests = int(values[0] or 0)
    errors = int(values[1] or 0)
    unpriced = int(values[9] or 0)
    # Null when no request had a known price: the sum of the known costs (none) would read as a real $0. Unpriced
    # counts every attempt of a request routing retried, requests only its final row: a cost summed from a priced
    # attempt still shows.
    pico = int(values[7] or 0) * _SPLIT + int(values[8] or 0)
    cost = None if unpriced and unpriced >= requests and not pico else pico_usd(pico)
    # Integer sums on both engines (SUM of an INTEGER column is a bigint on PostgreSQL, not a numeric).
    p50, p95 = percentiles(values[_LATENCY_AT:], 0.50, 0.95) if requests else (None, None)
    prompt = int(values[2] or 0)
    cache_read = int(values[5] or 0)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "prompt_tokens": prompt,
        "completion_tokens": int(values[3] or 0),
        "reasoning_tokens": int(values[4] or 0),
        "cache_read_tokens": cache_read,
        "cache_write_tokens": int(values[6] or 0),
        "cost_usd": cost,
        "unpriced_requests": unpriced,
        "p50_ms": p50,
        "p95_ms": p95,
        "cache_hit_ratio": cache_hit_ratio(cache_read, prompt),
    }


def cache_hit_ratio(cache_read_tokens: int, prompt_tokens: int) -> float | None:
    """Cache-read tokens over prompt tokens (which include them), 4 decimals; None without prompt tokens."""
    return round(cache_read_tokens / prompt_tokens, 4) if prompt_tokens > 0 else None


def pico_usd(pico: int) -> str:
    """An integer of pico-USD as an exact decimal string ("0.000123"), without Decimal arithmetic."""
    sign = "-" if pico < 0 else ""
    whole, frac = divmod(abs(pico), 1_000_000_000_000)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:012d}".rstrip("0")


def choose_bucket(
    start: dt.datetime, end: dt.datetime, bucket: Bucket, now: dt.datetime, max_points: int = MAX_POINTS
) -> Bucket:
    """The requested bucket, or a coarser one when it would give too many points or its rollup is pruned."""
    minute_since = now - dt.timedelta(days=MINUTE_ROLLUP_DAYS)
    while bucket in _COARSER:
        too_many = (end - floor_time(start, bucket)) / STEP[bucket] > max_points
        pruned = bucket == "minute" and start < minute_since
        if not (too_many or pruned):
            break
        bucket = _COARSER[bucket]
    return bucket


async def timeseries(
    engine: AsyncEngine,
    start: dt.datetime,
    end: dt.datetime,
    bucket: Bucket = "hour",
    group_by: GroupBy = "none",
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``{"bucket", "series": [{"key", "points": [...]}]}``; every series has a point for every bucket that overlaps
    ``[start, end)`` (zeros where nothing happened), so charts need no gap handling. Points hold whole buckets."""
    start, end = utc(start), utc(end)
    limit = MAX_POINTS if group_by == "none" else MAX_POINTS_GROUPED
    bucket = choose_bucket(start, end, bucket, utc(now or dt.datetime.now(dt.UTC)), limit)
    table = rollup_table(bucket, _family(group_by))
    first = floor_time(start, bucket)
    keys = _key_columns(table, group_by)
    width = len(keys)
    # The bucket comes back as the driver gives it (text on SQLite: parsing 10,000+ datetimes was a third of
    # the query's time) and is looked up in ``position`` under both spellings.
    query = (
        select(type_coerce(table.c.bucket, String), *keys, *_sums(table))
        .where(table.c.bucket >= first, table.c.bucket < end)
        .group_by(table.c.bucket, *keys)
    )
    query = _only_groups(query, table, group_by)
    stamps = []
    t = first
    while t < end:
        stamps.append(t)
        t += STEP[bucket]
    position: dict[Any, int] = {t: i for i, t in enumerate(stamps)}
    position.update({sqlite_bucket(t): i for i, t in enumerate(stamps)})
    labels = [iso(t) for t in stamps]
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found: dict[str | None, list[dict[str, Any] | None]] = {}
    for row in rows:
        series_key = _key_json(row[1 : 1 + width], group_by)
        points = found.get(series_key)
        if points is None:
            points = found[series_key] = [None] * len(stamps)
        index = position[row[0]]
        metrics = _metrics(row[1 + width :])
        metrics["t"] = labels[index]
        points[index] = metrics
    if group_by == "none" and not found:
        found[None] = [None] * len(stamps)
    empty = _metrics(_EMPTY)
    out = []
    for series_key in sorted(found, key=lambda k: (k is not None, k or "")):
        points = found[series_key]
        for index, point in enumerate(points):
            if point is None:
                points[index] = {**empty, "t": labels[index]}
        out.append({"key": series_key, "points": points})
    return {"bucket": bucket, "series": out}


def segments(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> list[tuple[Bucket, dt.datetime, dt.datetime]]:
    """``[start, end)`` (rounded out to whole minutes) as ranges of the coarsest rollup that tiles each part."""
    a = floor_time(start, "minute")
    b = floor_time(end, "minute")
    if b < end:
        b += STEP["minute"]
    minute_since = floor_time(now - dt.timedelta(days=MINUTE_ROLLUP_DAYS), "hour") + STEP["hour"]
    if a < minute_since:
        a = floor_time(a, "hour")
    if b < minute_since and floor_time(b, "hour") < b:
        b = floor_time(b, "hour") + STEP["hour"]
    if a >= b:
        return []
    h1 = floor_time(a, "hour")
    if h1 < a:
        h1 += STEP["hour"]
    h2 = floor_time(b, "hour")
    if h1 >= h2:
        return [("minute", a, b)]
    out: list[tuple[Bucket, dt.datetime, dt.datetime]] = []
    if a < h1:
        out.append(("minute", a, h1))
    if h2 < b:
        out.append(("minute", h2, b))
    d1 = floor_time(h1, "day")
    if d1 < h1:
        d1 += STEP["day"]
    d2 = floor_time(h2, "day")
    if d1 >= d2:
        out.append(("hour", h1, h2))
        return out
    if h1 < d1:
        out.append(("hour", h1, d1))
    if d2 < h2:
        out.append(("hour", d2, h2))
    out.append(("day", d1, d2))
    return out


async def _grouped(
    engine: AsyncEngine, start: dt.datetime, end: dt.datetime, group_by: str, now: dt.datetime | None
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """``(key columns' values, metrics)`` per group (one group, with no key values, ungrouped)."""
    parts = segments(utc(start), utc(end), utc(now or dt.datetime.now(dt.UTC)))
    if not parts:
        return []
    selects = []
    width = 0
    for granularity, lo, hi in parts:
        table = rollup_table(granularity, _family(group_by))
        keys = [column.label(f"k{i}") for i, column in enumerate(_key_columns(table, group_by))]
        width = len(keys)
        names = ("requests", "errors", *_TOKENS, "cost_pusd", "unpriced", *LATENCY_COLUMNS)
        columns = [table.c[name] for name in names]
        part = select(*keys, *columns).where(table.c.bucket >= lo, table.c.bucket < hi)
        selects.append(_only_groups(part, table, group_by))
    unioned = union_all(*selects).subquery()
    grouping = [unioned.c[f"k{i}"] for i in range(width)]
    query = select(*grouping, *_sums(unioned))
    if grouping:
        query = query.group_by(*grouping)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    # A group with no request may still have tokens or cost: attempts routing retried elsewhere (requests count
    # only final rows).
    return [(tuple(row[:width]), _metrics(row[width:])) for row in rows if any(row[width : width + _LATENCY_AT + 1])]


async def totals(
    engine: AsyncEngine, start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """``{"requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_requests", "p50_ms",
    "p95_ms", "cache_hit_ratio"}``."""
    rows = await _grouped(engine, start, end, "none", now)
    metrics = rows[0][1] if rows else _metrics(_EMPTY)
    fields = (
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "unpriced_requests",
        "p50_ms",
        "p95_ms",
        "cache_hit_ratio",
    )
    return {name: metrics[name] for name in fields}


async def top(
    engine: AsyncEngine,
    start: dt.datetime,
    end: dt.datetime,
    by: TopBy = "model",
    metric: Metric = "cost",
    n: int = 10,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``{"data": [{"key", "requests", "tokens", "cost_usd", "unpriced_requests", "cache_hit_ratio"}]}``, largest
    ``metric`` first (by cost: groups without any known cost last).

    tokens = prompt + completion (canonical usage: prompt includes cache reads/writes, completion reasoning)."""
    items = []
    for raw_key, metrics in await _grouped(engine, start, end, by, now):
        items.append(
            {
                "key": _key_json(raw_key, by),
                "requests": metrics["requests"],
                "tokens": metrics["prompt_tokens"] + metrics["completion_tokens"],
                "cost_usd": metrics["cost_usd"],
                "unpriced_requests": metrics["unpriced_requests"],
                "cache_hit_ratio": metrics["cache_hit_ratio"],
            }
        )

    def rank(item: dict[str, Any]) -> tuple[Any, ...]:
        if metric == "cost":
            value = Decimal(-1) if item["cost_usd"] is None else Decimal(item["cost_usd"])
        else:
            value = item[metric]
        return (value, item["requests"], item["key"] or "")

    items.sort(key=rank, reverse=True)
    return {"data": items[: max(n, 0)]}


def timeseries_csv(result: dict[str, Any]) -> str:
    """The time series as CSV: one line per (point, series), header ``CSV_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for series in result["series"]:
        for point in series["points"]:
            row = [point["t"], _csv_text(series["key"] or "")]
            row.extend("" if point[name] is None else point[name] for name in CSV_COLUMNS[2:])
            writer.writerow(row)
    return buffer.getvalue()


def _csv_text(value: str) -> str:
    """A cell a spreadsheet will not evaluate as a formula (model names come from upstream and clients)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
