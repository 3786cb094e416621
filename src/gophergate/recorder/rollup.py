"""Rollup deltas: a batch of request-log rows aggregated per (bucket, client key, provider, model, model group).

Pure functions, no I/O. The log writer (``sink.py``) turns a batch into deltas with ``aggregate`` and upserts them
(``upsert_sql``) in the same transaction as the raw rows; the seeding script and the spill replay use the same
functions, so every path rolls up identically.

Cost is kept as an integer of pico-USD (1e-12 USD): the upsert adds integers, exact on both engines (SQLite stores
exact decimals as TEXT, which SQL arithmetic would turn into floats). Per-request costs are exact ``Decimal``
products of tokens and per-million prices; a price in USD per million tokens with up to 6 decimals gives a
per-request cost with at most 12 decimals, so pico-USD holds it exactly. Only costs with more decimals (discount
factors such as 1/3) are rounded, half-even, once per batch and rollup row: at most 0.5e-12 USD each time.
A BIGINT of pico-USD holds up to 9.2 million USD per rollup row.

Latency: 40 fixed buckets. Bucket 0 is [0, 1 ms), bucket k (1..38) is [r^(k-1), r^k) ms with r = 600000^(1/38)
(about 1.42: each bucket is 42% wide), bucket 39 is [10 min, inf). Percentiles are interpolated geometrically
inside a bucket (error well under the bucket width).
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import accumulate
from typing import Any

from gophergate.core.record import COLUMNS
from gophergate.db.tables import LATENCY_BUCKETS, LATENCY_COLUMNS, ROLLUP_GRANULARITIES, ROLLUP_KEYS, ROLLUP_SUMS

_TOP_MS = 600_000.0
_RATIO = _TOP_MS ** (1 / (LATENCY_BUCKETS - 2))
_INV_LOG_RATIO = 1 / math.log(_RATIO)
# Lower edge of each latency bucket in ms (bucket 0 starts at 0).
LATENCY_EDGES_MS: tuple[float, ...] = (0.0, *(_RATIO ** (k - 1) for k in range(1, LATENCY_BUCKETS)))
PICO = Decimal(10) ** 12

_I_CREATED = COLUMNS.index("created_at")
_I_CLIENT = COLUMNS.index("client_key_id")
_I_PROVIDER = COLUMNS.index("provider")
_I_MODEL = COLUMNS.index("model")
_I_STATUS = COLUMNS.index("status")
_I_PROMPT = COLUMNS.index("prompt_tokens")
_I_COMPLETION = COLUMNS.index("completion_tokens")
_I_REASONING = COLUMNS.index("reasoning_tokens")
_I_CACHE_READ = COLUMNS.index("cache_read_tokens")
_I_CACHE_WRITE = COLUMNS.index("cache_write_tokens")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MINUTE = dt.timedelta(minutes=1)
_I_COST = COLUMNS.index("cost_usd")
_I_PRICE_UNKNOWN = COLUMNS.index("price_unknown")
_I_LATENCY = COLUMNS.index("latency_ms")
_I_FINAL = COLUMNS.index("final")
_I_GROUP = COLUMNS.index("model_group")

# (bucket, client, provider, model, model group): the group is "" for a plain model name.
Key = tuple[dt.datetime, int, str, str, str]
_VALUES: tuple[str, ...] = (*ROLLUP_SUMS, *LATENCY_COLUMNS)
_FULL = ("client_key_id", "provider", "model")
_MODEL = ("provider", "model", "model_group")


def delta_columns(table: str) -> tuple[str, ...]:
    """A delta row of ``table``: bucket, its key columns, ROLLUP_SUMS, LATENCY_COLUMNS (cost: int pico-USD)."""
    return ("bucket", *ROLLUP_KEYS[table], *_VALUES)


def latency_bucket(ms: float) -> int:
    if not ms >= 1.0:  # also NaN
        return 0
    if ms >= _TOP_MS:
        return LATENCY_BUCKETS - 1
    return min(LATENCY_BUCKETS - 2, 1 + int(math.log(ms) * _INV_LOG_RATIO))


def floor_time(value: dt.datetime, granularity: str) -> dt.datetime:
    """Start of the bucket holding ``value``, as an aware UTC datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    elif value.utcoffset():
        value = value.astimezone(dt.UTC)
    if granularity == "minute":
        return value.replace(second=0, microsecond=0, tzinfo=dt.UTC)
    if granularity == "hour":
        return value.replace(minute=0, second=0, microsecond=0, tzinfo=dt.UTC)
    return value.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=dt.UTC)


def to_pico(cost: Decimal) -> int:
    return int((cost * PICO).to_integral_value(ROUND_HALF_EVEN))


class Aggregator:
    """Deltas per granularity for rows in ``COLUMNS`` order (created_at a datetime, cost_usd a Decimal/None).

    ``add`` can be called with successive slices of a batch (the writer yields to the event loop in between).
    """

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[Key, list[Any]] = {}

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        # An accumulator: requests, errors, 5 token classes, cost (an exact Decimal until the deltas are made), the
        # requests without a known price, and a sparse latency histogram {bucket: count} (a minute of one key
        # rarely spans more than a few buckets). A request routing retried has one row per attempt: requests,
        # errors and latency count only its final row (what the client saw), so it counts once; tokens, cost
        # and unpriced add up every attempt's, each under the provider and model it went to. The key carries the
        # row's model group ("" for a plain model name): ``iter_deltas`` sorts the families out.
        minutes = self._minutes
        low = high = _EPOCH
        bucket = _EPOCH
        for row in rows:
            created: dt.datetime = row[_I_CREATED]
            if created.tzinfo is None:
                created = created.replace(tzinfo=dt.UTC)
            if not low <= created < high:  # rows of a batch mostly share their minute
                bucket = low = floor_time(created, "minute")
                high = low + _MINUTE
            key = (bucket, row[_I_CLIENT] or 0, row[_I_PROVIDER] or "", row[_I_MODEL] or "", row[_I_GROUP] or "")
            acc = minutes.get(key)
            if acc is None:
                acc = minutes[key] = [0, 0, 0, 0, 0, 0, 0, Decimal(0), 0, {}]
            if row[_I_FINAL]:
                acc[0] += 1
                if row[_I_STATUS] >= 400:
                    acc[1] += 1
                histogram = acc[9]
                slot = latency_bucket(row[_I_LATENCY])
                histogram[slot] = histogram.get(slot, 0) + 1
            acc[2] += row[_I_PROMPT] or 0
            acc[3] += row[_I_COMPLETION] or 0
            acc[4] += row[_I_REASONING] or 0
            acc[5] += row[_I_CACHE_READ] or 0
            acc[6] += row[_I_CACHE_WRITE] or 0
            cost = row[_I_COST]
            if cost is not None:
                acc[7] += cost
            if row[_I_PRICE_UNKNOWN]:
                acc[8] += 1

    def deltas(self) -> dict[str, list[tuple[Any, ...]]]:
        """Delta rows per rollup table name (``delta_columns``), sorted by key (one lock order for every writer)."""
        return dict(self.iter_deltas())

    def iter_deltas(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """``deltas`` one table at a time (the writer yields to the event loop in between: no stall over ~1 ms).

        The minute accumulators are keyed (bucket, client, provider, model, model group). The full family drops the
        group (plain traffic, whose group is "", is only re-keyed), the model family keeps it (per target and per
        group views sum over what they do not group by), the client family keeps the client only."""
        minutes = self._minutes
        for granularity in ROLLUP_GRANULARITIES:
            if granularity == "minute":
                grouped = minutes
            else:
                floors: dict[dt.datetime, dt.datetime] = {}

                def coarse(key: Any, g: str = granularity, floors: dict[dt.datetime, dt.datetime] = floors) -> Any:
                    start = floors.get(key[0])
                    if start is None:
                        start = floors[key[0]] = floor_time(key[0], g)
                    return (start, key[1], key[2], key[3], key[4])

                grouped = _merge(minutes, coarse)
            if any(key[4] for key in grouped):
                full = _merge(grouped, _drop_group)
            else:  # no row named a group: the keys stay unique without it
                full = {key[:4]: acc for key, acc in grouped.items()}
            for table, keys in ROLLUP_KEYS.items():
                if table.split("_")[1] == granularity:
                    if keys == _FULL:
                        accs = full
                    elif keys == _MODEL:
                        accs = _merge(grouped, _model_key)
                    else:
                        accs = _merge(full, _client_key)
                    yield table, _finish(accs)


def _drop_group(key: Key) -> tuple[dt.datetime, int, str, str]:
    return (key[0], key[1], key[2], key[3])


def _model_key(key: Key) -> tuple[dt.datetime, str, str, str]:
    return (key[0], key[2], key[3], key[4])


def _client_key(key: tuple[dt.datetime, int, str, str]) -> tuple[dt.datetime, int]:
    return (key[0], key[1])


def _merge(accs: dict[Any, list[Any]], key_of: Any) -> dict[Any, list[Any]]:
    merged: dict[Any, list[Any]] = {}
    for key, acc in accs.items():
        new_key = key_of(key)
        into = merged.get(new_key)
        if into is None:
            merged[new_key] = [*acc[:9], dict(acc[9])]
        else:
            for i in range(9):
                into[i] += acc[i]
            histogram = into[9]
            for slot, count in acc[9].items():
                histogram[slot] = histogram.get(slot, 0) + count
    return merged


def aggregate(rows: Iterable[Sequence[Any]]) -> dict[str, list[tuple[Any, ...]]]:
    agg = Aggregator()
    agg.add(rows)
    return agg.deltas()


def _finish(accs: dict[Any, list[Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for key in sorted(accs):
        acc = accs[key]
        histogram = [0] * LATENCY_BUCKETS
        for slot, count in acc[9].items():
            histogram[slot] = count
        rows.append((*key, *acc[:7], to_pico(acc[7]), acc[8], *histogram))
    return rows


def upsert_sql(table: str, paramstyle: str) -> str:
    """``INSERT ... ON CONFLICT DO UPDATE`` adding a delta row (same syntax on SQLite >= 3.24 and PostgreSQL)."""
    columns = delta_columns(table)
    if paramstyle == "qmark":
        values = ", ".join("?" for _ in columns)
    else:
        values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sums = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _VALUES)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT (bucket, {', '.join(ROLLUP_KEYS[table])}) DO UPDATE SET {sums}"
    )


_PG_TYPES = {
    "bucket": "timestamptz",
    "client_key_id": "int8",
    "provider": "text",
    "model": "text",
    "model_group": "text",
}


def upsert_unnest_sql(table: str) -> str:
    """PostgreSQL: the same upsert for a whole batch of delta rows in one statement, one array parameter per
    column (``transpose``). One statement per table and batch instead of one per delta row (executemany) halves
    what the rollups cost the writer there. The rows of one batch never repeat a key (ON CONFLICT would refuse)."""
    columns = delta_columns(table)
    arrays = ", ".join(f"${i}::{_PG_TYPES.get(c, 'int8')}[]" for i, c in enumerate(columns, start=1))
    sums = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _VALUES)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (bucket, {', '.join(ROLLUP_KEYS[table])}) DO UPDATE SET {sums}"
    )


def transpose(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Delta rows as one list per column (the parameters of ``upsert_unnest_sql``)."""
    return tuple(list(column) for column in zip(*rows, strict=True))


def sqlite_bucket(value: dt.datetime) -> str:
    """The naive-UTC text SQLAlchemy's SQLite DateTime reads and compares (same format as request_log rows)."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def percentiles(histogram: Sequence[int], *qs: float) -> tuple[float | None, ...]:
    """Several quantiles in ms from a latency histogram (None when it is empty), interpolated geometrically inside
    the bucket that holds each rank."""
    cumulative = list(accumulate(histogram))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return tuple(None for _ in qs)
    out: list[float | None] = []
    for q in qs:
        rank = q * total
        index = bisect_left(cumulative, rank)
        if index >= LATENCY_BUCKETS - 1:
            out.append(_TOP_MS)
            continue
        before = cumulative[index - 1] if index else 0
        inside = (rank - before) / (cumulative[index] - before)
        if index == 0:
            out.append(round(inside, 1))
        else:
            out.append(round(float(LATENCY_EDGES_MS[index] * _RATIO**inside), 1))
    return tuple(out)


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) in ms from a latency histogram; None when it is empty."""
    return percentiles(histogram, q)[0]
