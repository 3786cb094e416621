"""Rollups per model group (``rollup_minute_group``, ``rollup_hour_group``, ``rollup_day_group``): the same values as
the other rollup families, keyed by the model group the client named. Only rows with a model group go there.

The tables are filled from the raw request log still kept (rows since 0009 that named a group), aggregated as the log
writer does (``recorder/rollup.py`` as of this revision: requests, errors and latency from final rows only; tokens,
cost and unpriced from every attempt). Rows already pruned by the retention cannot be counted; minute rollups older
than the minute retention are pruned at its next pass, as the writer's are.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_pusd",
)
LATENCY_BUCKETS = 40
LATENCY = tuple(f"lat_{i:02d}" for i in range(LATENCY_BUCKETS))
GRANULARITIES = ("minute", "hour", "day")
NAMES = [(f"rollup_{g}_group", g) for g in GRANULARITIES]
_TOP_MS = 600_000.0
_INV_LOG_RATIO = 1 / math.log(_TOP_MS ** (1 / (LATENCY_BUCKETS - 2)))
_PICO = Decimal(10) ** 12


def upgrade() -> None:
    for name, _ in NAMES:
        op.create_table(
            name,
            sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
            sa.Column("model_group", sa.String(300), primary_key=True),
            *(sa.Column(column, sa.BigInteger, nullable=False) for column in SUMS),
            *(sa.Column(column, sa.Integer, nullable=False) for column in LATENCY),
            sa.Column("unpriced", sa.BigInteger, nullable=False, server_default="0"),
        )
    _backfill()


def _floor(value: dt.datetime, granularity: str) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    value = value.replace(tzinfo=dt.UTC)
    if granularity == "minute":
        return value.replace(second=0, microsecond=0)
    if granularity == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _latency_bucket(ms: float) -> int:
    if not ms >= 1.0:
        return 0
    if ms >= _TOP_MS:
        return LATENCY_BUCKETS - 1
    return min(LATENCY_BUCKETS - 2, 1 + int(math.log(ms) * _INV_LOG_RATIO))


def _backfill() -> None:
    conn = op.get_bind()
    log = sa.table(
        "request_log",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("model_group", sa.String),
        sa.column("final", sa.Boolean),
        sa.column("status", sa.Integer),
        sa.column("prompt_tokens", sa.Integer),
        sa.column("completion_tokens", sa.Integer),
        sa.column("reasoning_tokens", sa.Integer),
        sa.column("cache_read_tokens", sa.Integer),
        sa.column("cache_write_tokens", sa.Integer),
        sa.column("cost_usd", sa.String),  # exact decimal text on SQLite, a Decimal from PostgreSQL's NUMERIC
        sa.column("price_unknown", sa.Boolean),
        sa.column("latency_ms", sa.Float),
    )
    c = log.c
    query = sa.select(
        c.created_at,
        c.model_group,
        c.final,
        c.status,
        c.prompt_tokens,
        c.completion_tokens,
        c.reasoning_tokens,
        c.cache_read_tokens,
        c.cache_write_tokens,
        c.cost_usd,
        c.price_unknown,
        c.latency_ms,
    ).where(c.model_group.is_not(None), c.model_group != "")
    # (bucket, group) -> [requests, errors, 5 token classes, cost (Decimal), unpriced, {latency bucket: count}]
    accs: dict[str, dict[tuple[dt.datetime, str], list[Any]]] = {name: {} for name, _ in NAMES}
    for created, group, final, status, *tokens, cost, unknown, latency in conn.execute(query):
        for name, granularity in NAMES:
            key = (_floor(created, granularity), group)
            acc = accs[name].get(key)
            if acc is None:
                acc = accs[name][key] = [0, 0, 0, 0, 0, 0, 0, Decimal(0), 0, [0] * LATENCY_BUCKETS]
            if final:
                acc[0] += 1
                acc[1] += status >= 400
                acc[9][_latency_bucket(latency)] += 1
            for i, count in enumerate(tokens, start=2):
                acc[i] += count or 0
            if cost is not None:
                acc[7] += Decimal(str(cost))
            acc[8] += bool(unknown)
    for name, _ in NAMES:
        if not accs[name]:
            continue
        table = sa.table(
            name,
            sa.column("bucket", sa.DateTime(timezone=True)),
            sa.column("model_group", sa.String),
            *(sa.column(column, sa.BigInteger) for column in (*SUMS, *LATENCY, "unpriced")),
        )
        rows = []
        for (bucket, group), acc in sorted(accs[name].items()):
            pico = int((acc[7] * _PICO).to_integral_value(ROUND_HALF_EVEN))
            values = [*acc[:7], pico]
            row = {"bucket": bucket, "model_group": group, **dict(zip(SUMS, values, strict=True))}
            row.update(zip(LATENCY, acc[9], strict=True))
            row["unpriced"] = acc[8]
            rows.append(row)
        conn.execute(sa.insert(table), rows)


def downgrade() -> None:
    for name, _ in reversed(NAMES):
        op.drop_table(name)
