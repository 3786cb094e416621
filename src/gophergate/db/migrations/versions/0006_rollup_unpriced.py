"""Rollups count the requests without a known price (``unpriced``), so a cost total can say how many requests it
leaves out instead of showing a silent 0.

The column is added with a server default of 0 (a plain ALTER TABLE ADD COLUMN on both engines, no table rewrite),
then filled from the raw request log for the rows it still holds (``price_unknown``); rows already pruned by the
retention cannot be counted (their hour and day rollups keep 0 unpriced).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FAMILIES = {"": ("client_key_id", "provider", "model"), "_model": ("provider", "model"), "_client": ("client_key_id",)}
GRANULARITIES = ("minute", "hour", "day")
NAMES = [(f"rollup_{g}{family}", g, keys) for g in GRANULARITIES for family, keys in FAMILIES.items()]
_KEY_TYPES: dict[str, Any] = {"client_key_id": sa.BigInteger, "provider": sa.String(100), "model": sa.String(300)}


def _floor(value: dt.datetime, granularity: str) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    value = value.replace(tzinfo=dt.UTC)
    if granularity == "minute":
        return value.replace(second=0, microsecond=0)
    if granularity == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def upgrade() -> None:
    for name, _, _ in NAMES:
        op.add_column(name, sa.Column("unpriced", sa.BigInteger, nullable=False, server_default="0"))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    log = sa.table(
        "request_log",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("client_key_id", sa.BigInteger),
        sa.column("provider", sa.String),
        sa.column("model", sa.String),
        sa.column("price_unknown", sa.Boolean),
    )
    counts: dict[str, Counter[tuple[Any, ...]]] = {name: Counter() for name, _, _ in NAMES}
    query = sa.select(log.c.created_at, log.c.client_key_id, log.c.provider, log.c.model).where(
        log.c.price_unknown == sa.true()
    )
    for created, client, provider, model in conn.execute(query):
        parts = {"client_key_id": client or 0, "provider": provider or "", "model": model or ""}
        for name, granularity, keys in NAMES:
            counts[name][(_floor(created, granularity), *(parts[k] for k in keys))] += 1
    for name, _, keys in NAMES:
        if not counts[name]:
            continue
        table = sa.table(
            name,
            sa.column("bucket", sa.DateTime(timezone=True)),
            *(sa.column(k, _KEY_TYPES[k]) for k in keys),
            sa.column("unpriced", sa.BigInteger),
        )
        statement = (
            sa.update(table)
            .where(table.c.bucket == sa.bindparam("b_bucket"), *(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
            .values(unpriced=sa.bindparam("b_unpriced"))
        )
        params = [
            {"b_bucket": key[0], **{f"b_{k}": v for k, v in zip(keys, key[1:], strict=True)}, "b_unpriced": n}
            for key, n in counts[name].items()
        ]
        conn.execute(statement, params)


def downgrade() -> None:
    for name, _, _ in reversed(NAMES):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("unpriced")
